"""The brokerkit contract suite: the promises every broker plugin keeps.

Run it against any URL — a built-in plugin or your own — with the pytest plugin that
brokerkit installs. In a test module of your package::

    from brokerkit.contract import *  # noqa: F403

and run ``pytest --broker-url mqtt://127.0.0.1:1883``. Or from the shell:
``brokerkit check URL``. Each test declares the capabilities it needs and is skipped,
with the reason shown, where the plugin does not declare them;
``test_capability_is_honoured_or_refused`` checks that undeclared ones are refused.
"""

from __future__ import annotations

from brokerkit.contract.test_ack import (
    test_ack_and_nack_are_idempotent_and_exclusive,
    test_handler_error_redelivers_with_growing_attempt,
    test_manual_ack_after_the_handler_returned,
    test_manual_ack_settles_the_message,
    test_message_unacked_by_a_crashed_consumer_is_delivered_again,
    test_nack_with_requeue_redelivers,
    test_nack_without_requeue_drops_the_message,
    test_subscriber_keeps_working_after_its_handler_raised,
)
from brokerkit.contract.test_capabilities import (
    test_capability_is_honoured_or_refused,
)
from brokerkit.contract.test_concurrency import (
    test_concurrent_publishers_lose_nothing,
    test_concurrent_subscribes_each_receive_their_topic,
    test_disconnect_waits_for_running_handlers,
    test_drain_timeout_cancels_stuck_handlers,
    test_max_in_flight_bounds_concurrent_handlers,
    test_max_in_flight_one_runs_handlers_one_at_a_time,
    test_unsubscribe_waits_for_running_handlers,
)
from brokerkit.contract.test_dead_letter import (
    test_max_deliver_then_dead_letter_with_error_recorded,
    test_max_deliver_without_dead_letter_drops_after_the_last_attempt,
    test_nack_without_requeue_goes_to_dead_letter_at_once,
)
from brokerkit.contract.test_durable import (
    test_different_durable_names_are_independent,
    test_durable_gets_everything_published_while_it_was_disconnected,
    test_durable_resumes_after_unsubscribe,
)
from brokerkit.contract.test_fan_out import (
    test_fan_out_every_subscriber_gets_every_message,
    test_start_new_does_not_deliver_earlier_messages,
    test_topic_isolation,
    test_unsubscribe_is_idempotent_and_concurrency_safe,
    test_unsubscribe_stops_delivery_to_that_subscription_only,
)
from brokerkit.contract.test_invalid_input import (
    test_bad_headers_refused,
    test_bad_input_loses_nothing_already_accepted,
    test_bad_pattern_refused_on_subscribe,
    test_bad_topic_refused_on_publish,
    test_dead_letter_to_the_subscribed_topic_refused,
    test_handler_must_be_callable,
    test_non_bytes_body_refused,
    test_nonsensical_subscribe_options_refused,
)
from brokerkit.contract.test_lifecycle import (
    test_async_with_connects_and_disconnects,
    test_await_connect_returns_a_connected_broker,
    test_connect_is_idempotent,
    test_disconnect_ends_subscriptions,
    test_disconnect_is_idempotent,
    test_publish_and_subscribe_before_connect_raise,
    test_reconnect_after_disconnect_starts_afresh,
    test_subscribe_after_disconnect_raises,
)
from brokerkit.contract.test_ordering import (
    test_order_is_kept_per_key,
    test_order_per_key_holds_with_concurrent_handlers,
)
from brokerkit.contract.test_queue_groups import (
    test_each_message_goes_to_exactly_one_member,
    test_member_leaving_midway_loses_nothing,
    test_queue_group_and_plain_subscriber_both_receive,
    test_two_queue_groups_each_get_every_message,
)
from brokerkit.contract.test_replay import (
    test_durable_start_applies_only_on_first_use,
    test_earliest_replays_messages_published_before_subscribing,
    test_replay_keeps_order_per_key,
)
from brokerkit.contract.test_round_trip import (
    test_binary_body_with_every_byte_value,
    test_body_round_trip,
    test_empty_body,
    test_generated_ids_are_unique_and_preserved,
    test_headers_round_trip_including_non_ascii,
    test_id_and_timestamp_round_trip,
    test_key_round_trip,
    test_message_without_headers_arrives_without_headers,
    test_one_mebibyte_body,
    test_publish_many_delivers_every_message,
    test_subscriber_on_another_connection_receives,
    test_thousand_messages_all_arrive,
)
from brokerkit.contract.test_wildcards import (
    test_greater_than_matches_one_or_more_tokens,
    test_star_in_the_middle,
    test_star_matches_exactly_one_token,
)

__all__ = [
    "test_ack_and_nack_are_idempotent_and_exclusive",
    "test_async_with_connects_and_disconnects",
    "test_await_connect_returns_a_connected_broker",
    "test_bad_headers_refused",
    "test_bad_input_loses_nothing_already_accepted",
    "test_bad_pattern_refused_on_subscribe",
    "test_bad_topic_refused_on_publish",
    "test_binary_body_with_every_byte_value",
    "test_body_round_trip",
    "test_capability_is_honoured_or_refused",
    "test_concurrent_publishers_lose_nothing",
    "test_concurrent_subscribes_each_receive_their_topic",
    "test_connect_is_idempotent",
    "test_dead_letter_to_the_subscribed_topic_refused",
    "test_different_durable_names_are_independent",
    "test_disconnect_ends_subscriptions",
    "test_disconnect_is_idempotent",
    "test_disconnect_waits_for_running_handlers",
    "test_drain_timeout_cancels_stuck_handlers",
    "test_durable_gets_everything_published_while_it_was_disconnected",
    "test_durable_resumes_after_unsubscribe",
    "test_durable_start_applies_only_on_first_use",
    "test_each_message_goes_to_exactly_one_member",
    "test_earliest_replays_messages_published_before_subscribing",
    "test_empty_body",
    "test_fan_out_every_subscriber_gets_every_message",
    "test_generated_ids_are_unique_and_preserved",
    "test_greater_than_matches_one_or_more_tokens",
    "test_handler_error_redelivers_with_growing_attempt",
    "test_handler_must_be_callable",
    "test_headers_round_trip_including_non_ascii",
    "test_id_and_timestamp_round_trip",
    "test_key_round_trip",
    "test_manual_ack_after_the_handler_returned",
    "test_manual_ack_settles_the_message",
    "test_max_deliver_then_dead_letter_with_error_recorded",
    "test_max_deliver_without_dead_letter_drops_after_the_last_attempt",
    "test_max_in_flight_bounds_concurrent_handlers",
    "test_max_in_flight_one_runs_handlers_one_at_a_time",
    "test_member_leaving_midway_loses_nothing",
    "test_message_unacked_by_a_crashed_consumer_is_delivered_again",
    "test_message_without_headers_arrives_without_headers",
    "test_nack_with_requeue_redelivers",
    "test_nack_without_requeue_drops_the_message",
    "test_nack_without_requeue_goes_to_dead_letter_at_once",
    "test_non_bytes_body_refused",
    "test_nonsensical_subscribe_options_refused",
    "test_one_mebibyte_body",
    "test_order_is_kept_per_key",
    "test_order_per_key_holds_with_concurrent_handlers",
    "test_publish_and_subscribe_before_connect_raise",
    "test_publish_many_delivers_every_message",
    "test_queue_group_and_plain_subscriber_both_receive",
    "test_reconnect_after_disconnect_starts_afresh",
    "test_replay_keeps_order_per_key",
    "test_star_in_the_middle",
    "test_star_matches_exactly_one_token",
    "test_start_new_does_not_deliver_earlier_messages",
    "test_subscribe_after_disconnect_raises",
    "test_subscriber_keeps_working_after_its_handler_raised",
    "test_subscriber_on_another_connection_receives",
    "test_thousand_messages_all_arrive",
    "test_topic_isolation",
    "test_two_queue_groups_each_get_every_message",
    "test_unsubscribe_is_idempotent_and_concurrency_safe",
    "test_unsubscribe_stops_delivery_to_that_subscription_only",
    "test_unsubscribe_waits_for_running_handlers",
]
