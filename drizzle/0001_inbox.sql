CREATE TABLE "inbox" (
	"message_id" text NOT NULL,
	"consumer" text NOT NULL,
	"processed_at" timestamp with time zone NOT NULL,
	CONSTRAINT "inbox_consumer_message_id_pk" PRIMARY KEY("consumer","message_id")
);
