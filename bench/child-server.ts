import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ChildServer<T> {
  readonly info: T;
  /** The CPU time the server's process has used so far (user and system, µs). */
  cpuUsage(): Promise<NodeJS.CpuUsage>;
  stop(): Promise<void>;
}

const REPORT_CPU_USAGE = new URL('./servers/report-cpu-usage.ts', import.meta.url).href;

/** Starts a server script in its own process (its own thread, apart from the load generator) and reads its first JSON line. */
export async function startChildServer<T>(
  script: string,
  env: Record<string, string> = {},
): Promise<ChildServer<T>> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', REPORT_CPU_USAGE, script],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  const info = await new Promise<T>((resolve, reject) => {
    lines.once('line', (line) => resolve(JSON.parse(line) as T));
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
  return {
    info,
    cpuUsage: () =>
      new Promise((resolve, reject) => {
        const exited = (code: number | null) => reject(new Error(`${script} exited with ${code}`));
        child.once('exit', exited);
        child.once('message', (usage) => {
          child.off('exit', exited);
          resolve(usage as NodeJS.CpuUsage);
        });
        // A server gone already: its channel is closed, and send says so here rather than as an uncaught error.
        child.send('cpu-usage', (error) => error && reject(error));
      }),
    stop: () =>
      new Promise((resolve) => {
        // A server that has exited already (a crash under load) has nothing left to stop.
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
