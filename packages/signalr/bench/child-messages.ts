import type { ChildProcess } from 'node:child_process';

/** The next IPC message of `kind` from a forked child; rejects if the child exits first. */
export function nextMessage<T>(child: ChildProcess, kind: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: { kind: string }): void => {
      if (message.kind !== kind) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(message as T);
    };
    const onExit = (code: number | null): void =>
      reject(new Error(`child exited (${code}) before '${kind}'`));
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}
