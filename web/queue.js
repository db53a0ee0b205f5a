// The waiting room on an event's page: join the line, follow your place, and hold once it
// is your turn. The place is polled (GET /events/{id}/queue/me answers from the server's
// memory, so polling is cheap); EventSource cannot send the bearer token the stream needs.

import { el } from "./dom.js";
import { call, token, ApiError } from "./api.js";

const POLL_MS = 2000;

const clock = (at) => new Date(at).toLocaleTimeString();

function wait(seconds) {
  if (seconds < 60) return "less than a minute";
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `about ${minutes} min` : `about ${Math.round(minutes / 60)} h`;
}

export class WaitingRoom {
  /** `onChange` runs whenever whether the buyer may hold changes. */
  constructor(event, onChange) {
    this.event = event;
    this.enabled = !!event.waitingRoom?.enabled;
    this.onChange = onChange;
    this.place = null; // the buyer's entry, once joined
    this.timer = null;
    this.panel = el("section", { class: "queue card", id: "queue", "aria-live": "polite", hidden: !this.enabled });
  }

  /** Holds need a good pass while the room is on. */
  mayHold() {
    return !this.enabled || this.place?.status === "ADMITTED";
  }

  async open() {
    if (!this.enabled) return;
    if (!token()) return this.draw();
    await this.refresh();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
  }

  close() {
    clearInterval(this.timer);
  }

  async refresh() {
    if (!this.enabled || !token()) return;
    try {
      const { data } = await call("GET", `/events/${this.event.id}/queue/me`);
      this.place = data;
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "QUEUE_ENTRY_NOT_FOUND")) return;
      this.place = null;
    }
    this.draw();
  }

  async join() {
    const { data } = await call("POST", `/events/${this.event.id}/queue`);
    this.place = data;
    this.draw();
  }

  draw() {
    const before = this.panel.dataset.status;
    const p = this.place;
    const heading = el("h2", {}, "Waiting room");
    if (!token()) {
      this.panel.replaceChildren(heading, el("p", {}, "This on-sale has a waiting room. ", el("a", { href: "#/login" }, "Sign in"), " to join the line."));
    } else if (!p) {
      this.panel.replaceChildren(heading,
        el("p", {}, "Buyers are let in a few at a time. Join the line to get your turn."),
        el("button", { type: "button", id: "join-queue", onclick: () => this.join() }, "Join the line"));
    } else if (p.status === "ADMITTED") {
      this.panel.replaceChildren(heading,
        el("p", { id: "queue-status" }, el("strong", {}, "It's your turn."), ` Hold your tickets before ${clock(p.passExpiresAt)}.`));
    } else if (p.status === "SOLD_OUT") {
      this.panel.replaceChildren(heading,
        el("p", { id: "queue-status" }, "Sold out for now. Keep your place: if tickets come back, the line moves again."));
    } else if (p.status === "EXPIRED") {
      this.panel.replaceChildren(heading, el("p", { id: "queue-status" }, "Your turn has passed."));
    } else if (p.position == null) {
      this.panel.replaceChildren(heading,
        el("p", { id: "queue-status" }, `You're in. Places are drawn at random when the sale opens at ${clock(p.drawAt)}: arriving earlier gives no edge.`));
    } else {
      this.panel.replaceChildren(heading,
        el("p", { id: "queue-status" }, "Your place in line: ", el("strong", { id: "queue-position" }, String(p.position)),
          ` (${p.buyersAhead} ahead, ${wait(p.estimatedWaitSeconds)}).`));
    }
    this.panel.dataset.status = p?.status || "";
    if (this.panel.dataset.status !== before) this.onChange();
  }
}
