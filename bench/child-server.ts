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
      new Promise((resolve) => {
        child.once('message', (usage) => resolve(usage as NodeJS.CpuUsage));
        child.send('cpu-usage');
      }),
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
