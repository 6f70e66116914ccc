// A TCP proxy between the server and PostgreSQL that a test can cut and restore, to play a
// database restart or a network outage: cut() resets every open connection and refuses new
// ones (closing each as soon as it is accepted) until restore().
import * as net from "node:net";

export class TcpProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly clients = new WeakSet<net.Socket>();
  private down = false;
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
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
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

  restore(): void {
    this.down = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
