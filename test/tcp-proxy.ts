// A TCP proxy between the server and PostgreSQL that a test can cut and restore, to play a
// database restart or a network outage: cut() resets every open connection and refuses new
// ones (closing each as soon as it is accepted) until restore(). blackhole() plays a silent
// partition instead: connections stay open but nothing gets through, either way, and new ones
// are accepted and then hear nothing; restore() resets those (as the peers would) and forwards again.
import * as net from "node:net";

export class TcpProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly clients = new WeakSet<net.Socket>();
  private down = false;
  private silent = false;
  private readonly pairs = new Map<net.Socket, net.Socket>();
  private readonly stuck = new Set<net.Socket>();
  /** How many connections the proxy has cut or refused so far. */
  cutConnections = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
  }

  /** Starts listening on 127.0.0.1; returns the port. */
  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  /** `url` with host and port replaced by the proxy's. */
  static via(url: string, port: number): string {
    const proxied = new URL(url);
    proxied.hostname = "127.0.0.1";
    proxied.port = String(port);
    return proxied.toString();
  }

  private accept(client: net.Socket): void {
    client.on("error", () => {});
    if (this.down) {
      this.cutConnections++;
      client.destroy();
      return;
    }
    if (this.silent) {
      client.pause(); // accepted, never answered
      this.stuck.add(client);
      client.once("close", () => this.stuck.delete(client));
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    this.pairs.set(client, upstream);
    client.once("close", () => this.pairs.delete(client));
    this.clients.add(client);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    }
  }

  /** Resets every connection and refuses new ones. */
  cut(): void {
    this.down = true;
    for (const socket of this.sockets) {
      if (this.clients.has(socket)) this.cutConnections++;
      socket.resetAndDestroy();
    }
  }

  /** Forwards nothing any more, on open connections and new ones, without closing anything. */
  blackhole(): void {
    this.silent = true;
    for (const [client, upstream] of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
      this.stuck.add(client).add(upstream);
    }
  }

  restore(): void {
    this.down = false;
    this.silent = false;
    for (const socket of this.stuck) socket.resetAndDestroy();
    this.stuck.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
