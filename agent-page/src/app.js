// rapport's agent page: a browser agent takes calls here (README, "Browser agents").
//
// The page signs in to the WebSocket API with a page token (from the page link's fragment:
// `#socket=wss://…/live&token=…`), is shown each call offered to its agent with the reasons they were
// chosen, and accepts, declines, mutes and hangs up. An accepted call is an Amazon Chime SDK meeting,
// joined with amazon-chime-sdk-js: the caller's phone leg is in it already, or joins a moment later.
//
// One seam for tests and local use: if `window.rapportMeetingSession(configuration, logger)` is defined
// before this script runs, it makes the meeting session instead of DefaultMeetingSession. The
// configuration is always the SDK's own MeetingSessionConfiguration, built from the accepted meeting.

import {
  ConsoleLogger,
  DefaultDeviceController,
  DefaultMeetingSession,
  LogLevel,
  MeetingSessionConfiguration,
} from "amazon-chime-sdk-js";

const PING_MS = 5 * 60 * 1000; // API Gateway closes a quiet connection after 10 minutes
const MODES = {
  known_agent: "you spoke with this caller before",
  interest: "matches the caller's interests",
  any_available: "you were free longest",
};

const $ = (id) => document.getElementById(id);
const page = {
  socket: null,
  link: null,
  offers: new Map(), // call_id -> {offer, element, timer}
  call: null, // {callId, offer, session, muted}
  retries: 0,
  opened: false,
};

// -- signing in ----------------------------------------------------------------------------------------

function linkFromFragment() {
  const fields = new URLSearchParams(location.hash.replace(/^#/, ""));
  const socket = fields.get("socket");
  const token = fields.get("token");
  return socket && token ? { socket, token } : null;
}

function showSignIn() {
  $("sign-in").hidden = false;
  $("offers-section").hidden = true;
  setPresence("offline", "Not signed in");
  $("socket-url").focus();
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  start({ socket: String(form.get("socket")), token: String(form.get("token")) });
});

function start(link) {
  page.link = link;
  // The token stays out of the address bar, history and referrers once read.
  history.replaceState(null, "", location.pathname + location.search);
  $("sign-in").hidden = true;
  $("offers-section").hidden = false;
  connect();
}

// -- the connection --------------------------------------------------------------------------------------

function connect() {
  setPresence("connecting", "Connecting…");
  const url = new URL(page.link.socket);
  url.searchParams.set("token", page.link.token);
  const socket = new WebSocket(url.toString());
  page.socket = socket;
  page.opened = false;
  let ping = null;
  socket.addEventListener("open", () => {
    page.opened = true;
    page.retries = 0;
    problem("");
    setPresence("available", page.call ? "On a call" : "Available");
    send({ action: "offers" });
    ping = setInterval(() => send({ action: "ping" }), PING_MS);
  });
  socket.addEventListener("message", (event) => receive(event.data));
  socket.addEventListener("close", () => {
    clearInterval(ping);
    if (page.socket !== socket) return;
    if (!page.opened && page.retries >= 2) {
      // Never opened, three times: the link has run out or is not for this page.
      setPresence("offline", "Signed out");
      problem("This page link no longer works. Ask your team lead for a new one.");
      showSignIn();
      return;
    }
    page.retries += 1;
    setPresence("offline", "Offline · reconnecting");
    setTimeout(connect, Math.min(30000, 1000 * 2 ** page.retries));
  });
}

function send(message) {
  if (page.socket && page.socket.readyState === WebSocket.OPEN) {
    page.socket.send(JSON.stringify(message));
    return true;
  }
  problem("Not connected: the page is reconnecting. Try again in a moment.");
  return false;
}

function receive(data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return;
  }
  switch (message.type) {
    case "offer":
      addOffer(message.offer);
      break;
    case "offers":
      for (const offer of message.offers) addOffer(offer);
      break;
    case "accepted":
      joinCall(message);
      break;
    case "withdrawn":
      // The offer ended elsewhere: answered on another of the agent's pages, or the caller hung up.
      if (page.offers.has(message.call_id) && !(page.call && page.call.callId === message.call_id)) {
        removeOffer(message.call_id);
        announce("A call is no longer waiting: the caller hung up, or it was answered elsewhere.");
      }
      break;
    case "declined":
      removeOffer(message.call_id);
      announce("Call declined. It goes to a colleague.");
      break;
    case "ended":
      endCall("You hung up.");
      break;
    case "error":
      if (message.call_id && page.offers.has(message.call_id)) removeOffer(message.call_id);
      if (page.call && message.call_id === page.call.callId && page.call.pending) {
        page.call = null;
        showIdle();
      }
      problem(message.error);
      break;
    default:
      break;
  }
}

// -- offers ------------------------------------------------------------------------------------------------

function addOffer(offer) {
  if (page.offers.has(offer.call_id) || offer.expires_at * 1000 <= Date.now()) return;
  const element = $("offer-template").content.firstElementChild.cloneNode(true);
  element.dataset.callId = offer.call_id;
  element.querySelector(".mode").textContent = MODES[offer.mode] || offer.mode;
  element.querySelector(".interest").textContent = offer.interest
    ? `Interested in ${offer.interest}`
    : "No interest on record";
  const reasons = element.querySelector(".reasons");
  for (const reason of offer.reasons) {
    const item = document.createElement("li");
    item.textContent = reason.replaceAll("`", "");
    reasons.append(item);
  }
  const accept = element.querySelector(".accept");
  const decline = element.querySelector(".decline");
  accept.setAttribute("aria-label", `Accept call (${element.querySelector(".mode").textContent})`);
  accept.addEventListener("click", () => answer(offer.call_id, "accept"));
  decline.addEventListener("click", () => answer(offer.call_id, "decline"));
  $("offers").append(element);
  const entry = { offer, element, timer: null };
  entry.timer = setInterval(() => countdown(entry), 250);
  countdown(entry);
  page.offers.set(offer.call_id, entry);
  $("no-offers").hidden = true;
  announce("Incoming call.");
  if (!page.call) accept.focus();
}

function countdown(entry) {
  const left = Math.ceil((entry.offer.expires_at * 1000 - Date.now()) / 1000);
  if (left > 0) {
    entry.element.querySelector(".countdown").textContent = `${left} s to answer`;
    return;
  }
  removeOffer(entry.offer.call_id);
  announce("A call was not answered in time and went to a colleague.");
}

function removeOffer(callId) {
  const entry = page.offers.get(callId);
  if (!entry) return;
  clearInterval(entry.timer);
  entry.element.remove();
  page.offers.delete(callId);
  $("no-offers").hidden = page.offers.size > 0;
}

function answer(callId, action) {
  const entry = page.offers.get(callId);
  if (!entry || !send({ action, call_id: callId })) return;
  for (const button of entry.element.querySelectorAll("button")) button.disabled = true;
  if (action === "accept") {
    page.call = { callId, offer: entry.offer, session: null, muted: false, pending: true };
    showCall("Connecting the caller…");
  }
}

// -- the call ------------------------------------------------------------------------------------------

function makeSession(configuration, logger) {
  if (typeof window.rapportMeetingSession === "function") {
    return window.rapportMeetingSession(configuration, logger);
  }
  return new DefaultMeetingSession(configuration, logger, new DefaultDeviceController(logger));
}

async function joinCall({ call_id: callId, meeting, attendee }) {
  removeOffer(callId);
  const entry = page.call && page.call.callId === callId ? page.call : null;
  page.call = { callId, offer: entry ? entry.offer : null, session: null, muted: false, pending: false };
  showCall("Connecting the caller…");
  const logger = new ConsoleLogger("rapport-agent", LogLevel.WARN);
  const configuration = new MeetingSessionConfiguration({ Meeting: meeting }, { Attendee: attendee });
  const session = makeSession(configuration, logger);
  page.call.session = session;
  session.audioVideo.addObserver({
    audioVideoDidStart: () => setCallState("On call"),
    // The meeting ended (the caller hung up and rapport deleted it) or the connection was lost.
    audioVideoDidStop: () => {
      if (page.call && page.call.session === session) endCall("The call ended.");
    },
  });
  session.audioVideo.realtimeSubscribeToAttendeeIdPresence((attendeeId, present) => {
    if (attendeeId === attendee.AttendeeId) return; // the agent's own attendee
    setCallState(present ? "On call · caller connected" : "Caller left");
  });
  try {
    const inputs = await session.audioVideo.listAudioInputDevices();
    await session.audioVideo.startAudioInput(inputs.length ? inputs[0].deviceId : null);
  } catch (error) {
    problem(`No microphone: ${error && error.message ? error.message : error}`);
  }
  await session.audioVideo.bindAudioElement($("meeting-audio"));
  session.audioVideo.start();
  $("hang-up").focus();
}

function showCall(state) {
  const offer = page.call.offer;
  $("call").hidden = false;
  $("call-reasons").textContent = offer ? offer.reasons.join("; ").replaceAll("`", "") : "";
  $("call-interest").textContent = offer && offer.interest ? offer.interest : "none on record";
  $("call-id").textContent = page.call.callId;
  $("mute").setAttribute("aria-pressed", "false");
  $("mute").textContent = "Mute";
  setCallState(state);
  setPresence("on-call", "On a call");
}

function setCallState(text) {
  $("call-state").textContent = text;
}

$("mute").addEventListener("click", () => {
  const call = page.call;
  if (!call || !call.session) return;
  call.muted = !call.muted;
  if (call.muted) call.session.audioVideo.realtimeMuteLocalAudio();
  else call.session.audioVideo.realtimeUnmuteLocalAudio();
  $("mute").setAttribute("aria-pressed", String(call.muted));
  $("mute").textContent = call.muted ? "Unmute" : "Mute";
  announce(call.muted ? "Muted." : "Unmuted.");
});

$("hang-up").addEventListener("click", () => {
  if (!page.call) return;
  send({ action: "hangup", call_id: page.call.callId });
  endCall("You hung up.");
});

function endCall(why) {
  const call = page.call;
  if (!call) return;
  page.call = null;
  if (call.session) call.session.audioVideo.stop();
  setCallState(why);
  announce(why);
  setTimeout(() => {
    if (!page.call) showIdle();
  }, 1500);
}

function showIdle() {
  $("call").hidden = true;
  setPresence(page.socket && page.opened ? "available" : "offline", page.opened ? "Available" : "Offline");
  const next = $("offers").querySelector(".accept:not(:disabled)");
  if (next) next.focus();
}

// -- status lines ------------------------------------------------------------------------------------

function setPresence(state, text) {
  $("presence").dataset.state = state;
  $("presence").textContent = text;
}

function announce(text) {
  // Read out by screen readers (a live region), and the count in the tab's title.
  $("announcer").textContent = text;
  document.title = page.offers.size ? `(${page.offers.size}) rapport · agent` : "rapport · agent";
}

function problem(text) {
  $("problem").textContent = text;
}

const link = linkFromFragment();
if (link) start(link);
else showSignIn();
