import fs from 'node:fs';
import net, { type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { TestStack } from './stack';

/**
 * How a relay treats connections: pass them on to the target, accept them and never send a
 * byte (a hung server), or refuse them because nothing listens on the port (a stopped server).
 */
export type RelayMode = 'forward' | 'silent' | 'down';

/**
 * A TCP relay on loopback in front of a real server (the embedded S3 server,
 * PostgreSQL) and fails on demand. Tests point s3gate at the relay's port and switch modes to
 * produce outages that the real server cannot produce by itself.
 */
export class TcpRelay {
  private server: net.Server | undefined;
  private readonly connections = new Set<Socket>();
  /** Client sockets that are forwarded, each with a function that cuts it from its upstream. */
  private readonly forwarded = new Map<Socket, () => void>();
  private mode: RelayMode = 'forward';
  /** Connections accepted in silent mode that are still open. */
  readonly silentSockets = new Set<Socket>();
  /** Every connection the relay accepted, in any mode. */
  acceptedCount = 0;
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** Start listening, on a free port the first time and on the same port after `setMode('down')`. */
  async listen(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /**
   * Switch the mode. 'silent' also stops forwarding on open connections, so kept-alive sockets
   * hang too. 'down' stops listening and resets every open connection, as a crashed server
   * would. Leaving 'down' listens again on the same port.
   */
  async setMode(mode: RelayMode): Promise<void> {
    const wasDown = this.mode === 'down';
    this.mode = mode;
    if (mode === 'silent') this.silenceForwarded();
    if (mode === 'down') {
      // server.close() waits for open connections, so reset them first: a client that keeps
      // its connection (a Redis client, say) would otherwise hold the relay up forever.
      const stopped = this.stopListening();
      for (const socket of this.connections) socket.resetAndDestroy();
      await stopped;
      return;
    }
    if (wasDown) await this.listen();
  }

  /** Close every connection accepted in silent mode, as a hung server that finally gives up. */
  dropSilentConnections(): void {
    for (const socket of this.silentSockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.mode = 'down';
    for (const socket of this.connections) socket.destroy();
    await this.stopListening();
  }

  private async stopListening(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise((resolve) => server.close(resolve));
  }

  private accept(socket: Socket): void {
    this.acceptedCount += 1;
    this.track(socket);
    if (this.mode === 'silent') {
      this.hang(socket);
      return;
    }
    if (this.mode === 'down') {
      socket.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.targetPort, this.targetHost);
    this.track(upstream);
    socket.pipe(upstream);
    upstream.pipe(socket);
    const closeUpstream = () => upstream.destroy();
    const closeSocket = () => socket.destroy();
    socket.once('close', closeUpstream);
    upstream.once('close', closeSocket);
    this.forwarded.set(socket, () => {
      socket.off('close', closeUpstream);
      upstream.off('close', closeSocket);
      socket.unpipe(upstream);
      upstream.unpipe(socket);
      upstream.destroy();
    });
    socket.once('close', () => this.forwarded.delete(socket));
  }

  /** Turn open forwarded connections silent: the client keeps its socket and hears nothing more. */
  private silenceForwarded(): void {
    for (const [socket, detach] of this.forwarded) {
      detach();
      this.forwarded.delete(socket);
      this.hang(socket);
    }
  }

  /**
   * Keep a connection open and send nothing. Its input is read and dropped, so the relay notices
   * when the client closes it.
   */
  private hang(socket: Socket): void {
    this.silentSockets.add(socket);
    socket.once('close', () => this.silentSockets.delete(socket));
    socket.resume();
  }

  private track(socket: Socket): void {
    this.connections.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.connections.delete(socket));
  }
}

/**
 * Count the objects in the stack's embedded S3 bucket from the emulator's files. ListObjects
 * would be the natural call, but @20minutes/s3rver 4.0.4 canonicalizes bucket-level paths with a
 * trailing slash and rejects the SDK's signature for them.
 */
export function objectCount(stack: TestStack): number {
  return listFiles(bucketDir(stack)).filter((file) => file.endsWith('._S3rver_object')).length;
}

/**
 * Count the multipart uploads that were started and never completed. The emulator keeps them in
 * an `uploads` folder, and it does not implement AbortMultipartUpload, so s3gate cannot remove
 * them; on AWS the abort removes them.
 */
export function pendingMultipartUploads(stack: TestStack): number {
  const uploadsDir = path.join(bucketDir(stack), '._S3rver_uploads');
  return fs.existsSync(uploadsDir) ? fs.readdirSync(uploadsDir).length : 0;
}

export async function rowCount(stack: TestStack): Promise<number> {
  const rows = await stack.runtime.database.db.selectFrom('images').select('id').execute();
  return rows.length;
}

/** Objects and rows together, to show that a failed request stored nothing. */
export async function storedCounts(stack: TestStack): Promise<{ objects: number; rows: number }> {
  return { objects: objectCount(stack), rows: await rowCount(stack) };
}

function bucketDir(stack: TestStack): string {
  return path.join(stack.dataDir, 's3', stack.runtime.config.s3.bucket);
}

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).map((file) =>
    file.split(path.sep).join('/'),
  );
}

/** Poll `check` until it returns true or `timeoutMs` passes; returns the last result. */
export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await delay(20);
  }
  return true;
}
