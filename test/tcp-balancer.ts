// A TCP load balancer on 127.0.0.1 in front of several replicas, as a cloud load balancer in
// front of a deployment: each new connection goes to the next replica that is up (round robin).
// down(i) resets every connection to replica i and sends no new ones there, as when a replica
// dies or is cut off; up(i) brings it back.
import * as net from "node:net";

export class TcpBalancer {
  private readonly server: net.Server;
  /** Per replica: the open (client, upstream) socket pairs. */
  private readonly connections = new Map<number, Set<[net.Socket, net.Socket]>>();
  private readonly downs = new Set<number>();
  private next = 0;
  /** Connections accepted per replica so far. */
  readonly accepted: number[];

  constructor(private readonly ports: number[]) {
    this.accepted = ports.map(() => 0);
    this.server = net.createServer((client) => this.accept(client));
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /** Open connections to replica i. */
  open(i: number): number {
    return this.connections.get(i)?.size ?? 0;
  }

  down(i: number): void {
    this.downs.add(i);
    // Reset both sides, so the replica sees the connection go away too.
    for (const pair of this.connections.get(i) ?? []) for (const socket of pair) socket.resetAndDestroy();
  }

  up(i: number): void {
    this.downs.delete(i);
  }

  async close(): Promise<void> {
    for (const pairs of this.connections.values()) for (const pair of pairs) for (const socket of pair) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on("error", () => {});
    const candidates = this.ports.map((_, i) => (this.next + i) % this.ports.length).filter((i) => !this.downs.has(i));
    const target = candidates[0];
    if (target === undefined) {
      client.resetAndDestroy();
      return;
    }
    this.next = target + 1;
    this.accepted[target]!++;
    const upstream = net.connect(this.ports[target]!, "127.0.0.1");
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    const pairs = this.connections.get(target) ?? new Set<[net.Socket, net.Socket]>();
    this.connections.set(target, pairs);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.once("close", () => pairs.delete(pair));
  }
}
