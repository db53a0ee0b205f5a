// The live inventory of one event: the stream's messages applied to a model, and the model
// drawn as section cards and seat maps. Only what the server committed is ever shown.

const STATUS_TEXT = { AVAILABLE: "available", RESERVED: "held", BOOKED: "booked" };

/** The seat ids of a stream list: lone ids and runs [first id, count] of neighbours. */
function* seatIds(list) {
  for (const item of list) {
    if (Array.isArray(item)) {
      for (let k = 0; k < item[1]; k++) yield item[0] + k;
    } else {
      yield item;
    }
  }
}

export class LiveInventory {
  /**
   * @param {number} eventId
   * @param {HTMLElement} root where sections and seat maps are drawn
   * @param {(seatId: number) => void} onSeat called when a buyer toggles a free seat
   */
  constructor(eventId, root, onSeat) {
    this.eventId = eventId;
    this.root = root;
    this.onSeat = onSeat;
    this.sections = new Map(); // id -> section (counts, rows)
    this.seats = new Map(); // id -> { status, button, sectionId, label }
    this.selected = new Set();
    this.onChange = () => {};
    this.source = null;
  }

  /** Opens the stream; EventSource reconnects by itself, resuming from its last id. */
  open() {
    this.source = new EventSource(`/events/${this.eventId}/inventory/stream`);
    this.source.addEventListener("state", (e) => this.replace(JSON.parse(e.data)));
    this.source.addEventListener("change", (e) => this.apply(JSON.parse(e.data)));
    this.source.addEventListener("open", () => this.root.dataset.live = "open");
    this.source.addEventListener("error", () => this.root.dataset.live = "reconnecting");
  }

  close() {
    if (this.source) this.source.close();
  }

  replace(state) {
    this.sections.clear();
    this.seats.clear();
    this.root.replaceChildren();
    for (const section of state.sections) this.addSection(section);
    for (const id of [...this.selected]) {
      if (this.seats.get(id)?.status !== "AVAILABLE") this.selected.delete(id);
    }
    this.status = state.status;
    this.onChange();
  }

  apply(change) {
    for (const section of change.newSections || []) this.addSection(section);
    for (const counts of change.sections) {
      const section = this.sections.get(counts.id);
      if (!section) continue;
      Object.assign(section, counts);
      this.drawCounts(section);
    }
    let lost = 0;
    // Seats that changed, grouped by their new status: {"RESERVED": [ids], ...}.
    for (const [status, ids] of Object.entries(change.seats)) {
      for (const id of seatIds(ids)) {
        const seat = this.seats.get(id);
        if (!seat) continue;
        seat.status = status;
        if (status !== "AVAILABLE" && this.selected.delete(id)) lost += 1;
        this.drawSeat(seat);
      }
    }
    this.status = change.status;
    this.onChange(lost);
  }

  addSection(section) {
    const card = document.createElement("section");
    card.className = "section";
    card.dataset.sectionId = section.id;
    const title = document.createElement("h3");
    title.textContent = section.name;
    const counts = document.createElement("p");
    counts.className = "counts";
    card.append(title, counts);
    section.card = card;
    section.countsEl = counts;
    this.sections.set(section.id, section);
    if (section.rows) {
      const map = document.createElement("div");
      map.className = "seatmap";
      map.setAttribute("role", "group");
      map.setAttribute("aria-label", `${section.name} seat map`);
      // Seats that are not available, by status; every other seat is.
      const taken = new Map();
      for (const [status, ids] of Object.entries(section.seats || {})) {
        for (const id of seatIds(ids)) taken.set(id, status);
      }
      for (const row of section.rows) {
        const line = document.createElement("div");
        line.className = "row";
        const label = document.createElement("span");
        label.className = "row-label";
        label.textContent = row.label;
        line.append(label);
        // A row's seats come as runs: [first id, first number, count].
        for (const [firstId, firstNumber, count] of row.seats) {
          for (let k = 0; k < count; k++) {
            const id = firstId + k;
            const number = firstNumber + k;
            const button = document.createElement("button");
            button.type = "button";
            button.className = "seat";
            button.dataset.seatId = id;
            button.textContent = number;
            const status = taken.get(id) || "AVAILABLE";
            const seat = { id, status, button, label: `Row ${row.label} seat ${number}` };
            button.addEventListener("click", () => this.toggle(seat));
            this.seats.set(id, seat);
            this.drawSeat(seat);
            line.append(button);
          }
        }
        map.append(line);
      }
      card.append(map);
    }
    card.append(this.sectionActions(section));
    this.drawCounts(section);
    this.root.append(card);
  }

  /** The controls under a section: filled in by the page (quantity, best available). */
  sectionActions(section) {
    const actions = document.createElement("div");
    actions.className = "actions";
    section.actions = actions;
    return actions;
  }

  toggle(seat) {
    if (seat.status !== "AVAILABLE") return;
    if (this.selected.has(seat.id)) this.selected.delete(seat.id);
    else this.selected.add(seat.id);
    this.drawSeat(seat);
    this.onSeat(seat.id);
  }

  drawSeat(seat) {
    const { button, status } = seat;
    const chosen = this.selected.has(seat.id);
    button.dataset.status = status;
    button.disabled = status !== "AVAILABLE";
    button.setAttribute("aria-pressed", String(chosen));
    button.setAttribute("aria-label", `${seat.label}, ${chosen ? "selected" : STATUS_TEXT[status]}`);
  }

  drawCounts(section) {
    const price = (section.priceCents / 100).toFixed(2);
    section.countsEl.textContent =
      `${section.available} of ${section.capacity} available · ${section.held} held · ${section.booked} booked · ${price} each`;
    section.card.dataset.available = section.available;
  }

  /** The seat ids selected, all of one section (the API holds seats of one section). */
  selection() {
    return [...this.selected];
  }

  clearSelection() {
    const ids = [...this.selected];
    this.selected.clear();
    for (const id of ids) {
      const seat = this.seats.get(id);
      if (seat) this.drawSeat(seat);
    }
  }
}
