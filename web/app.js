// The buyer's page: sign in, events on sale, an event with its live seat map, the hold
// with its countdown, booking with a discount code, my bookings. Plain modules, no build.

import { el } from "./dom.js";
import { call, token, signIn, signOut, register, idempotencyKey, ApiError } from "./api.js";
import { LiveInventory } from "./seatmap.js";
import { WaitingRoom } from "./queue.js";

const app = document.getElementById("app");
const notice = document.getElementById("notice");
let leave = () => {}; // what the current view must stop (a stream, a timer)

function say(message) {
  notice.textContent = message;
  notice.hidden = !message;
}

function failure(error) {
  say(error instanceof ApiError ? `${error.message} (${error.code})` : String(error));
  if (error instanceof ApiError && error.status === 401) location.hash = "#/login";
}

const money = (cents) => (cents / 100).toFixed(2);

function show(...nodes) {
  app.replaceChildren(...nodes);
  const heading = app.querySelector("h1, h2");
  if (heading) heading.setAttribute("tabindex", "-1"), heading.focus();
  for (const n of document.querySelectorAll("[data-signed-in]")) n.hidden = !token();
}

function loginView() {
  const email = el("input", { id: "email", type: "email", name: "email", autocomplete: "username", required: true });
  const password = el("input", { id: "password", type: "password", name: "password", autocomplete: "current-password", required: true, minlength: "8" });
  const submit = async (e, create) => {
    e.preventDefault();
    try {
      await (create ? register : signIn)(email.value, password.value);
      say("");
      location.hash = "#/events";
    } catch (error) {
      failure(error);
    }
  };
  const form = el("form", { class: "card", onsubmit: (e) => submit(e, false) },
    el("h1", {}, "Sign in"),
    el("label", { for: "email" }, "Email"), email,
    el("label", { for: "password" }, "Password"), password,
    el("div", { class: "buttons" },
      el("button", { type: "submit" }, "Sign in"),
      el("button", { type: "button", class: "secondary", onclick: (e) => submit(e, true) }, "Create account")));
  show(form);
}

async function eventsView() {
  const { data } = await call("GET", "/events?status=ON_SALE&limit=50");
  const list = el("ul", { class: "events" }, data.map((e) =>
    el("li", {},
      el("a", { href: `#/events/${e.id}` }, e.eventName),
      el("span", {}, ` ${new Date(e.eventDate).toLocaleString()} · ${e.availableSeats} left`))));
  show(el("h1", {}, "On sale now"), data.length ? list : el("p", {}, "Nothing is on sale right now."));
}

async function eventView(id) {
  const { data: event } = await call("GET", `/events/${id}`);
  const map = el("div", { class: "sections", id: "sections" });
  const holdPanel = el("aside", { class: "hold card", id: "hold", "aria-live": "polite" });
  const live = new LiveInventory(event.id, map, () => drawSelection());
  const selectionBar = el("div", { class: "selection" });
  const queue = new WaitingRoom(event, () => {
    for (const button of holdButtons) button.disabled = !queue.mayHold();
    drawSelection();
  });
  const holdButtons = [];
  let hold = null;
  let timer = null;

  function drawSelection() {
    const seats = live.selection();
    selectionBar.replaceChildren(
      el("span", {}, seats.length ? `${seats.length} seat(s) selected` : "Select seats on the map, or ask for the best available."),
      el("button", { type: "button", id: "hold-seats", disabled: !seats.length || !!hold || !queue.mayHold(), onclick: () => placeHold({ type: "SEATS", seatIds: seats }) }, "Hold selected seats"));
  }

  function addControls() {
    for (const section of live.sections.values()) {
      if (section.actions.childElementCount) continue;
      const qty = el("input", { type: "number", min: "1", max: String(event.maxTicketsPerUser || 100), value: "2", "aria-label": `Tickets in ${section.name}` });
      const isSeated = section.type === "RESERVED";
      const split = el("input", { type: "checkbox", "aria-label": "Accept seats apart" });
      const button = el("button", { type: "button", disabled: !queue.mayHold(), onclick: () => placeHold(isSeated
          ? { type: "BEST_AVAILABLE", sectionId: section.id, quantity: Number(qty.value), allowSplit: split.checked }
          : { type: "GENERAL", sectionId: section.id, quantity: Number(qty.value) }) },
          isSeated ? "Best available" : "Hold tickets");
      holdButtons.push(button);
      section.actions.append(qty, isSeated ? el("label", {}, split, " seats apart are fine") : "", button);
    }
  }

  live.onChange = (lost) => {
    addControls();
    drawSelection();
    if (lost) say(`${lost} selected seat(s) were just taken by someone else.`);
  };

  async function placeHold(body) {
    if (!token()) return (location.hash = "#/login");
    try {
      const { data } = await call("POST", `/events/${event.id}/reservations`, { body, key: idempotencyKey() });
      hold = data;
      live.clearSelection();
      say("");
      drawHold();
      queue.refresh();
    } catch (error) {
      failure(error);
    }
  }

  function drawHold() {
    clearInterval(timer);
    if (!hold) return holdPanel.replaceChildren();
    const left = el("strong", { id: "countdown" });
    const tick = () => {
      const seconds = Math.max(0, Math.round((Date.parse(hold.expiresAt) - Date.now()) / 1000));
      left.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
      if (!seconds) {
        clearInterval(timer);
        hold = null;
        say("Your hold expired; the tickets went back on sale.");
        drawHold();
        drawSelection();
      }
    };
    const code = el("input", { id: "discount", name: "discount", "aria-label": "Discount code", placeholder: "Discount code (optional)" });
    const book = async (e) => {
      e.preventDefault();
      try {
        const body = { reservationIds: [hold.id] };
        if (code.value.trim()) body.discountCode = code.value.trim();
        const { data } = await call("POST", "/bookings", { body, key: idempotencyKey() });
        hold = null;
        clearInterval(timer);
        holdPanel.replaceChildren(el("div", { id: "booked" },
          el("h2", {}, "Booked"),
          el("p", {}, "Reference ", el("strong", { id: "reference" }, data.bookingReference)),
          el("p", {}, `Total ${money(data.totalCents)}`, data.discountCents ? ` (discount ${money(data.discountCents)})` : ""),
          el("a", { href: "#/bookings" }, "See my bookings")));
        drawSelection();
      } catch (error) {
        failure(error);
      }
    };
    const release = async () => {
      try {
        await call("DELETE", `/reservations/${hold.id}`);
        hold = null;
        drawHold();
        drawSelection();
      } catch (error) {
        failure(error);
      }
    };
    const what = hold.seatIds.length
      ? hold.seatIds.map((id) => live.seats.get(id)?.label || `seat ${id}`).join(", ")
      : `${hold.quantity} ticket(s)`;
    holdPanel.replaceChildren(
      el("h2", {}, "Your hold"),
      el("p", {}, what),
      el("p", {}, "Time left ", left),
      el("form", { onsubmit: book }, code,
        el("div", { class: "buttons" },
          el("button", { type: "submit", id: "book" }, "Book"),
          el("button", { type: "button", class: "secondary", onclick: release }, "Release"))));
    tick();
    timer = setInterval(tick, 1000);
  }

  show(
    el("h1", {}, event.eventName),
    el("p", {}, `${new Date(event.eventDate).toLocaleString()}${event.venueName ? " · " + event.venueName : ""}`),
    el("p", { class: "legend" },
      el("span", { class: "seat", "data-status": "AVAILABLE" }, "1"), " available ",
      el("span", { class: "seat", "data-status": "RESERVED" }, "1"), " held ",
      el("span", { class: "seat", "data-status": "BOOKED" }, "1"), " booked ",
      el("span", { class: "seat", "aria-pressed": "true" }, "1"), " selected"),
    queue.panel,
    el("div", { class: "layout" }, el("div", {}, selectionBar, map), holdPanel));
  drawSelection();
  live.open();
  queue.open();
  leave = () => {
    live.close();
    queue.close();
    clearInterval(timer);
  };
}

async function bookingsView() {
  if (!token()) return (location.hash = "#/login");
  const { data } = await call("GET", "/bookings?limit=50");
  const cancel = async (reference) => {
    try {
      await call("POST", `/bookings/${reference}/cancel`);
      await bookingsView();
    } catch (error) {
      failure(error);
    }
  };
  const rows = data.map((b) =>
    el("li", { "data-reference": b.bookingReference },
      el("strong", {}, b.bookingReference),
      ` · ${b.status} · ${money(b.totalCents)} · ${b.items.length} item(s) `,
      b.status === "CONFIRMED" ? el("button", { type: "button", class: "secondary", onclick: () => cancel(b.bookingReference) }, "Cancel") : ""));
  show(el("h1", {}, "My bookings"), rows.length ? el("ul", { class: "bookings" }, rows) : el("p", {}, "No bookings yet."));
}

async function route() {
  leave();
  leave = () => {};
  const hash = location.hash || "#/events";
  try {
    let m;
    if (hash === "#/login") loginView();
    else if (hash === "#/bookings") await bookingsView();
    else if ((m = hash.match(/^#\/events\/(\d+)$/))) await eventView(Number(m[1]));
    else await eventsView();
  } catch (error) {
    failure(error);
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
