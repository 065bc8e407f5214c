import { connect } from 'node:net';

/** Sends raw bytes (what fetch would refuse to send) and returns all the server answers until it closes. */
export function exchange(port: string, request: string): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(request));
    socket.on('data', (chunk) => (text += chunk));
    socket.on('close', () => resolve(text));
  });
}
