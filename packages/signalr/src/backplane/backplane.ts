import type { SendScope } from '../hub.ts';

/** A send that every server instance delivers to its own matching connections. */
export interface BackplaneMessage {
  /** The publishing instance, which has already delivered locally and skips its own echo. */
  readonly origin: string;
  readonly scope: SendScope;
  readonly target: string;
  readonly arguments: readonly unknown[];
}

export type BackplaneListener = (message: BackplaneMessage) => void;

/** Fans sends out across server instances. One backplane may serve several hub servers in a process. */
export interface Backplane {
  /** Delivers every published message (from any instance) to `listener`; resolves once it is live. */
  subscribe(listener: BackplaneListener): Promise<() => Promise<void>>;
  publish(message: BackplaneMessage): Promise<void>;
  close(): Promise<void>;
}
