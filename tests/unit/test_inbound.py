"""What a client frame asks of the provider, and what a failed delivery tells the client."""

from __future__ import annotations

import pytest

from provider import frames, inbound
from provider.ids import new_reply_token, new_session_id
from provider.inbound import (
    AddSubscription,
    AnswerElsewhere,
    AnswerRequest,
    CloseSession,
    RemoveSubscription,
    SendError,
    ToComponent,
)
from provider.settings import ServerSettings, server_settings
from wasmcloud_provider_sdk import (
    BrokerMessage,
    CodecError,
    InvocationTimeout,
    LatticeUnavailable,
    NotServedError,
    TransportError,
)

SID = "ws_" + "A" * 22


def settings(**config: str) -> ServerSettings:
    return server_settings(config)


def decide(
    frame: frames.Inbound,
    *,
    subscriptions: frozenset[str] = frozenset(),
    pending: frozenset[str] = frozenset(),
    config: ServerSettings | None = None,
    moved_in: bool = False,
    has_handler: bool = True,
) -> inbound.Action:
    return inbound.decide(
        frame,
        SID,
        subscriptions,
        pending,
        config or settings(),
        moved_in=moved_in,
        has_handler=has_handler,
    )


# --- messages -------------------------------------------------------------------------------


def test_a_message_goes_to_the_component_with_the_session_as_reply_to() -> None:
    action = decide(frames.InboundMessage("chat", b"hi", None, "m1"))
    assert action == ToComponent(BrokerMessage("chat", b"hi", SID), "m1")


def test_the_clients_reply_to_is_put_under_its_session() -> None:
    action = decide(frames.InboundMessage("chat", b"hi", "answers.x", None))
    assert action == ToComponent(BrokerMessage("chat", b"hi", f"{SID}.answers.x"), None)


@pytest.mark.parametrize("reply_to", [new_session_id(), "broadcast", "news.>"])
def test_a_client_cannot_point_the_reply_to_elsewhere(reply_to: str) -> None:
    action = decide(frames.InboundMessage("chat", b"", reply_to, None))
    assert isinstance(action, ToComponent)
    assert action.message.reply_to == f"{SID}.{reply_to}"


def test_without_a_handler_the_message_is_refused() -> None:
    action = decide(frames.InboundMessage("chat", b"hi", None, 7), has_handler=False)
    assert action == SendError(
        frames.NO_HANDLER, "this endpoint has no handler link: messages cannot be delivered", 7
    )


def test_the_answer_to_a_pending_request() -> None:
    token = new_reply_token()
    action = decide(frames.InboundMessage(token, b"42", "r", None), pending=frozenset({token}))
    assert action == AnswerRequest(token, BrokerMessage(token, b"42", f"{SID}.r"))


def test_a_pending_answer_wins_over_everything_else() -> None:
    token = new_reply_token()
    action = decide(
        frames.InboundMessage(token, b"", None, None),
        pending=frozenset({token}),
        moved_in=True,
        has_handler=False,
    )
    assert isinstance(action, AnswerRequest)


def test_an_answer_to_a_request_made_before_the_session_moved_here() -> None:
    token = new_reply_token()
    action = decide(frames.InboundMessage(token, b"42", None, None), moved_in=True)
    assert action == AnswerElsewhere(token, BrokerMessage(token, b"42", SID))


def test_a_reply_token_subject_is_a_message_when_the_session_did_not_move() -> None:
    token = new_reply_token()
    action = decide(frames.InboundMessage(token, b"", None, None), moved_in=False)
    assert action == ToComponent(BrokerMessage(token, b"", SID), None)


def test_a_moved_in_session_still_delivers_other_subjects() -> None:
    action = decide(frames.InboundMessage("chat", b"", None, None), moved_in=True)
    assert isinstance(action, ToComponent)


def test_a_moved_in_answer_needs_no_handler() -> None:
    token = new_reply_token()
    action = decide(frames.InboundMessage(token, b"", None, None), moved_in=True, has_handler=False)
    assert isinstance(action, AnswerElsewhere)


def test_overloaded() -> None:
    assert inbound.overloaded(settings(INBOUND_QUEUE_LIMIT="3"), "x") == SendError(
        frames.OVERLOADED,
        "the component is behind (3 messages queued for it): this message was not "
        "delivered, retry later",
        "x",
    )


# --- subscriptions --------------------------------------------------------------------------


def test_subscribe() -> None:
    assert decide(frames.Subscribe("news.*", "s1")) == AddSubscription("news.*", "s1")


def test_unsubscribe() -> None:
    assert decide(frames.Unsubscribe("news.*", "u1")) == RemoveSubscription("news.*")


def test_subscribe_without_session_tracking() -> None:
    action = decide(frames.Subscribe("news", 1), config=settings(ENABLE_SESSION_TRACKING="false"))
    # As before: this error frame carries no id.
    assert action == SendError(
        frames.UNSUPPORTED, "this endpoint keeps no subscriptions (ENABLE_SESSION_TRACKING=false)"
    )


def test_a_topic_cannot_start_with_a_session_id() -> None:
    action = decide(frames.Subscribe(f"{new_session_id()}.x", 2))
    assert action == SendError(
        frames.BAD_SUBJECT,
        "a topic cannot start with a session id (publishes to it go to the session)",
        2,
    )


def test_too_many_subscriptions() -> None:
    action = decide(
        frames.Subscribe("c", 3),
        subscriptions=frozenset({"a", "b"}),
        config=settings(MAX_SUBSCRIPTIONS="2"),
    )
    assert action == SendError(
        frames.TOO_MANY_SUBSCRIPTIONS, "at most 2 subscriptions per session (MAX_SUBSCRIPTIONS)", 3
    )


def test_subscribing_again_at_the_limit_is_not_refused() -> None:
    action = decide(
        frames.Subscribe("a", 3),
        subscriptions=frozenset({"a", "b"}),
        config=settings(MAX_SUBSCRIPTIONS="2"),
    )
    assert action == AddSubscription("a", 3)


def test_too_many_pattern_characters() -> None:
    config = settings(MAX_SUBSCRIPTION_BYTES="10")
    assert decide(
        frames.Subscribe("abcd", 4), subscriptions=frozenset({"123456"}), config=config
    ) == (AddSubscription("abcd", 4))
    action = decide(
        frames.Subscribe("abcde", 4), subscriptions=frozenset({"123456"}), config=config
    )
    assert action == SendError(
        frames.TOO_MANY_SUBSCRIPTIONS,
        "at most 10 characters of patterns per session (MAX_SUBSCRIPTION_BYTES)",
        4,
    )


def test_the_count_is_checked_before_the_characters() -> None:
    config = settings(MAX_SUBSCRIPTIONS="1", MAX_SUBSCRIPTION_BYTES="1")
    action = decide(frames.Subscribe("long", 5), subscriptions=frozenset({"a"}), config=config)
    assert isinstance(action, SendError)
    assert "MAX_SUBSCRIPTIONS" in action.message


def test_index_full() -> None:
    assert inbound.index_full("the index is full", 6) == SendError(
        frames.TOO_MANY_SUBSCRIPTIONS, "the index is full", 6
    )


# --- rate limit, bad UTF-8 -------------------------------------------------------------------


def test_rate_limited_drops_by_default() -> None:
    assert inbound.rate_limited(1000, settings()) == SendError(
        frames.RATE_LIMITED, "rate limit exceeded: this message was dropped"
    )


def test_rate_limited_closes_after_enough_strikes() -> None:
    config = settings(RATE_LIMIT_POLICY="close", RATE_LIMIT_CLOSE_AFTER="3")
    assert isinstance(inbound.rate_limited(2, config), SendError)
    assert inbound.rate_limited(3, config) == CloseSession(1008, "rate limit exceeded")


def test_not_utf8() -> None:
    assert SendError(frames.BAD_UTF8, "text frame is not valid UTF-8") == inbound.NOT_UTF8


# --- delivery failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (
            LatticeUnavailable("nats down"),
            frames.LATTICE_UNAVAILABLE,
            "the provider is not connected to the lattice: retry later",
        ),
        (
            NotServedError("no responders on wrpc.0.0.1.x"),
            frames.COMPONENT_UNAVAILABLE,
            "the component is not running (nobody serves handle-message): retry later",
        ),
        (
            TimeoutError(),
            frames.HANDLER_TIMEOUT,
            "the component did not answer within 2.5 s (HANDLER_TIMEOUT_SEC)",
        ),
        (
            InvocationTimeout("no handshake"),
            frames.HANDLER_TIMEOUT,
            "the component did not answer in time",
        ),
        (
            TransportError("trap"),
            frames.DELIVERY_FAILED,
            "the component failed to handle the message (e.g. it trapped)",
        ),
        (
            CodecError("bad result"),
            frames.DELIVERY_FAILED,
            "the component failed to handle the message (e.g. it trapped)",
        ),
    ],
)
def test_delivery_failure(exc: Exception, code: str, text: str) -> None:
    assert inbound.delivery_failure(exc, 2.5) == (code, text)
    assert "wrpc" not in text and "_INBOX" not in text  # no lattice internals


# --- purity ---------------------------------------------------------------------------------
