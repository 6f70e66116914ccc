// One LISTEN session per process for every NOTIFY channel: the credential cache, the signing
// keys, the runner channel and the event stream each subscribe here instead of holding a
// database connection of their own. When the session is lost, every subscriber hears
// `onState(false)` (notifications may have been missed); once it is back and LISTENs again,
// `onState(true)`.
import pg from "pg";

export interface NotificationSessionOptions {
  connectionString: string;
  connectTimeoutMs: number;
  keepAliveDelayMs: number;
  /** How often the session proves it is alive, and how long that may take. */
  heartbeatMs: number;
}

interface Subscriber {
  channel: string;
  onNotify: (payload: string) => void;
  onState: (connected: boolean) => void;
}

export class NotificationSession {
  private readonly subscribers = new Set<Subscriber>();
  private client: pg.Client | undefined;
  /** Channels the current client LISTENs on. */
  private listening = new Set<string>();
  private connecting: Promise<void> | undefined;
  private connected = false;
  private retry: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private delayMs = 250;

  constructor(private readonly options: NotificationSessionOptions) {}

  /** Resolves once the channel is listened on, or once the first attempt failed (retries go on). */
  async listen(channel: string, onNotify: (payload: string) => void, onState: (connected: boolean) => void): Promise<() => Promise<void>> {
    const subscriber: Subscriber = { channel, onNotify, onState };
    this.subscribers.add(subscriber);
    if (this.client === undefined && this.retry === undefined) {
      await this.connect(); // tells every subscriber, this one too, once it listens
    } else if (this.connecting) {
      await this.connecting; // the same
    } else if (this.connected && this.client) {
      const client = this.client;
      try {
        await this.listenOn(client, channel);
        if (this.client === client && this.subscribers.has(subscriber)) onState(true);
      } catch {
        this.lost(client);
      }
    }
    // Otherwise the session is down and reconnecting: onState(true) follows when it is back.
    return async () => {
      if (!this.subscribers.delete(subscriber)) return;
      if ([...this.subscribers].some((s) => s.channel === channel)) return;
      if (this.subscribers.size === 0) return this.end();
      const client = this.client;
      if (client && this.listening.delete(channel)) await client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => {});
    };
  }

  private async listenOn(client: pg.Client, channel: string): Promise<void> {
    if (this.listening.has(channel)) return;
    await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    this.listening.add(channel);
  }

  private connect(): Promise<void> {
    this.retry = undefined;
    const next = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: "runner-control-plane-listen",
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: this.options.keepAliveDelayMs,
      query_timeout: this.options.heartbeatMs,
    });
    this.client = next;
    this.listening = new Set();
    next.on("error", () => this.lost(next));
    next.on("end", () => this.lost(next));
    next.on("notification", (message) => {
      if (message.payload === undefined) return;
      for (const subscriber of this.subscribers) if (subscriber.channel === message.channel) subscriber.onNotify(message.payload);
    });
    this.connecting = (async () => {
      try {
        await next.connect();
        // Channels subscribed while connecting are picked up by the loop.
        for (let pending = this.pendingChannels(); pending.length > 0; pending = this.pendingChannels()) {
          for (const channel of pending) await this.listenOn(next, channel);
        }
        if (this.client !== next) return;
        this.delayMs = 250;
        this.connected = true;
        // A silent partition would leave this session waiting for notifications forever: a
        // query now and then that must answer in time finds it (and the session is replaced).
        this.heartbeat = setInterval(() => {
          next.query("SELECT 1").catch(() => this.lost(next));
        }, this.options.heartbeatMs);
        this.heartbeat.unref();
        for (const subscriber of this.subscribers) subscriber.onState(true);
      } catch {
        this.lost(next);
      } finally {
        if (this.client === next || this.client === undefined) this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  private pendingChannels(): string[] {
    return [...new Set([...this.subscribers].map((s) => s.channel))].filter((channel) => !this.listening.has(channel));
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.connected = false;
    this.listening = new Set();
    clearInterval(this.heartbeat);
    for (const subscriber of this.subscribers) subscriber.onState(false);
    client.removeAllListeners();
    client.on("error", () => {});
    // With a query outstanding (a heartbeat that timed out) pg destroys the socket rather than
    // waiting for a goodbye on a silent connection.
    client.end().catch(() => {});
    if (this.subscribers.size > 0) this.retry = setTimeout(() => void this.connect(), this.delayMs);
    this.delayMs = Math.min(this.delayMs * 2, 5_000);
  }

  private async end(): Promise<void> {
    clearTimeout(this.retry);
    this.retry = undefined;
    clearInterval(this.heartbeat);
    this.connected = false;
    const client = this.client;
    this.client = undefined;
    this.listening = new Set();
    if (client) {
      client.removeAllListeners();
      client.on("error", () => {});
      await client.end().catch(() => {});
    }
  }
}
