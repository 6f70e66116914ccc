// Performance shim, loaded first by main.ts. Connect aborts an AbortController at the end
// of every request (cleanup, not an error), and Node 20 builds a fresh DOMException with a
// captured stack trace whenever abort() is called without a reason: about 7 % of the CPU
// time of a GetRunner call in our profiles (bench/README.md). Aborting without a reason
// now uses one shared AbortError instead; an explicit reason is passed through unchanged.
const abortWithoutReason = new DOMException("This operation was aborted", "AbortError");
const originalAbort = AbortController.prototype.abort;

AbortController.prototype.abort = function abort(this: AbortController, reason?: unknown): void {
  originalAbort.call(this, reason === undefined ? abortWithoutReason : reason);
};
