// Coalesces concurrent calls into one database statement. Each round trip to PostgreSQL
// costs a write and a wake-up on both sides, which dominates small queries; under load,
// requests that arrive while a batch is in flight are sent together as the next batch.
// At low load a call runs alone right away (no timer, no added latency).
//
// Every input gets its own outcome: `execute` returns one result per input, in order, and
// a result that is an Error rejects only that input's promise.

export interface BatcherOptions {
  /** Most inputs in one statement. */
  maxBatch: number;
  /** Batches allowed in flight at once (keeps some pipelining across pool connections). */
  maxInFlight: number;
}

interface Pending<In, Out> {
  input: In;
  resolve: (value: Out) => void;
  reject: (reason: unknown) => void;
}

export class Batcher<In, Out> {
  private queue: Pending<In, Out>[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly execute: (inputs: In[]) => Promise<(Out | Error)[]>,
    private readonly options: BatcherOptions,
  ) {}

  submit(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (!this.scheduled && this.inFlight < this.options.maxInFlight) {
        this.scheduled = true;
        // After the current I/O phase: requests parsed in the same loop turn join this batch.
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    while (this.queue.length > 0 && this.inFlight < this.options.maxInFlight) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.inFlight++;
      this.run(batch).finally(() => {
        this.inFlight--;
        this.flush();
      });
    }
  }

  private async run(batch: Pending<In, Out>[]): Promise<void> {
    try {
      const results = await this.execute(batch.map((pending) => pending.input));
      batch.forEach((pending, i) => {
        const result = results[i];
        if (result instanceof Error) pending.reject(result);
        else pending.resolve(result as Out);
      });
    } catch (err) {
      for (const pending of batch) pending.reject(err);
    }
  }
}
