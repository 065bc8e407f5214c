CREATE TABLE "dead_letters" (
	"message_id" text NOT NULL,
	"queue" text NOT NULL,
	"reason" text,
	"routing_key" text NOT NULL,
	"content_type" text,
	"headers" jsonb NOT NULL,
	"body" "bytea" NOT NULL,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "dead_letters_message_id_queue_pk" PRIMARY KEY("message_id","queue")
);
