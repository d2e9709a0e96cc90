//! A wasmCloud component behind the WebSocket messaging provider.
//!
//! Every WebSocket client message arrives in `handle-message`; its `reply-to` is the client's
//! session id (or `<session id>.<the client's reply_to>`), set by the provider. The subject
//! says what to do (README.md, "Message conventions"):
//!
//! | subject           | the component                                                    |
//! |-------------------|------------------------------------------------------------------|
//! | `broadcast`       | publishes the body to `broadcast`: every session gets it         |
//! | `topic.<name>`    | publishes the body to `<name>`: sessions subscribed to it get it |
//! | `ask`             | asks the client (`consumer.request`), sends back its answer      |
//! | `ws.session.*`    | session events: greeting, goodbye, log lines                     |
//! | anything else     | echoes the body back to `reply-to`                               |

wit_bindgen::generate!({
    world: "component",
    path: "wit",
    generate_all,
});

use exports::wasmcloud::messaging::handler::Guest;
use wasi::logging::logging::{log, Level};
use wasmcloud::messaging::consumer;
use wasmcloud::messaging::types::BrokerMessage;

/// The provider's default `BROADCAST_SUBJECT`: publishing to it reaches every session.
const BROADCAST: &str = "broadcast";
/// How long `ask` waits for the client's answer.
const ASK_TIMEOUT_MS: u32 = 5_000;
/// The context of this component's log lines.
const LOG: &str = "websocket-component";

struct Component;

impl Guest for Component {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let BrokerMessage {
            subject,
            body,
            reply_to,
        } = msg;

        // Session events come from the provider, never from clients (it refuses them).
        if let Some(event) = subject.strip_prefix("ws.session.") {
            if let Some(session) = reply_to {
                on_session_event(event, &session);
            }
            return Ok(());
        }

        // An `Err` returned here reaches the client as an error frame (`handler_error`).
        if subject == BROADCAST {
            return publish(BROADCAST, body);
        }
        if let Some(topic) = subject.strip_prefix("topic.") {
            return publish(topic, body);
        }
        let Some(reply_to) = reply_to else {
            // e.g. a client-mode link without a reply subject: nobody to answer.
            log(Level::Warn, LOG, &format!("{subject}: no reply-to"));
            return Ok(());
        };
        if subject == "ask" {
            return ask(&reply_to, &body);
        }
        publish(&reply_to, body) // echo
    }
}

/// `consumer.request` to the asking client: the client gets a message with subject `ask` and a
/// `reply_to` token (`rq_…`), and answers with a message whose subject is that token. Its answer,
/// or why there was none (timeout, session closed), goes back to the asker as a plain message.
fn ask(reply_to: &str, question: &[u8]) -> Result<(), String> {
    let subject = format!("{}.ask", session_id(reply_to));
    let answer = match consumer::request(&subject, question, ASK_TIMEOUT_MS) {
        Ok(answer) => answer.body,
        Err(e) => format!("ask failed: {e}").into_bytes(),
    };
    publish(reply_to, answer)
}

fn on_session_event(event: &str, session: &str) {
    match event {
        // reply-to = the session id; body {"session_id", "remote_addr", "identity"}
        "connected" => {
            if let Err(e) = publish(&format!("{session}.greeting"), format!("hello {session}")) {
                log(Level::Warn, LOG, &format!("greeting {session} failed: {e}"));
            }
        }
        // The session is gone, so this publish normally fails at once with
        // `Err("no such session: …")`. Deliberate: a failed publish is an ordinary `Err` to
        // handle, never a trap (and the end-to-end tests use it to time the answer).
        "disconnected" => {
            match publish(&format!("{session}.goodbye"), format!("goodbye {session}")) {
                Ok(()) => log(Level::Info, LOG, &format!("goodbye {session}: sent")),
                Err(e) => log(Level::Info, LOG, &format!("goodbye {session}: {e}")),
            }
        }
        // The client left without closing (resumable), or came back.
        "detached" | "resumed" => log(Level::Info, LOG, &format!("session {session} {event}")),
        _ => {} // events added later
    }
}

fn publish(subject: &str, body: impl Into<Vec<u8>>) -> Result<(), String> {
    consumer::publish(&BrokerMessage {
        subject: subject.to_string(),
        body: body.into(),
        reply_to: None,
    })
}

/// `ws_…` from `ws_…` or `ws_….<client reply_to>` (session ids contain no dot).
fn session_id(reply_to: &str) -> &str {
    reply_to.split('.').next().unwrap_or(reply_to)
}

export!(Component);
