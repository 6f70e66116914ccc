import type { PhaseView } from "./phase.js";

/** The coloured badge and its reason; the colour is never the only sign (the word is there). */
export function PhaseBadge({ view }: { view: PhaseView }) {
  return (
    <span className="phase">
      <span className={`badge badge-${view.tone}`}>{view.label}</span> <span className="reason">{view.reason}</span>
    </span>
  );
}
