//! Which invocations a scaler acts on.
//!
//! A CloudWatch alarm action that invokes a function directly delivers a state-change event. Only
//! a transition *into* ALARM of the function's own alarm is a request to scale; every other
//! payload is answered with the reason it was ignored, never with an error, so AWS does not
//! retry it.

use aws_lambda_events::cloudwatch_alarms::{CloudWatchAlarm, CloudWatchAlarmStateValue};
use chrono::SecondsFormat;
use serde_json::Value;

/// The generic alarm event: its `configuration` stays raw JSON, so metric, metric-math and
/// composite alarms all parse.
pub type AlarmEvent = CloudWatchAlarm;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Scale. `key` identifies this transition: AWS delivers the same event again when it
    /// retries an asynchronous invocation, and the key lets the scaler recognise it. `at` is the
    /// transition's time, so a retry of an older transition can be told from the current one.
    Act {
        key: String,
        at: chrono::DateTime<chrono::Utc>,
    },
    Ignore(String),
}

/// Parses a raw payload and decides whether it asks `own_alarm`'s function to scale.
pub fn classify_json(payload: Value, own_alarm: &str) -> Verdict {
    match serde_json::from_value::<AlarmEvent>(payload) {
        Ok(event) => classify(&event, own_alarm),
        Err(e) => Verdict::Ignore(format!("not a CloudWatch alarm state-change event: {e}")),
    }
}

pub fn classify(event: &AlarmEvent, own_alarm: &str) -> Verdict {
    let name = &event.alarm_data.alarm_name;
    if name != own_alarm {
        return Verdict::Ignore(format!(
            "event is for alarm {name:?}; this function acts on {own_alarm:?}"
        ));
    }
    let Some(state) = &event.alarm_data.state else {
        return Verdict::Ignore(format!("event for {name:?} carries no state"));
    };
    if state.value != CloudWatchAlarmStateValue::Alarm {
        return Verdict::Ignore(format!(
            "alarm {name:?} went to {}, not ALARM",
            state_name(&state.value)
        ));
    }
    if let Some(prev) = &event.alarm_data.previous_state {
        if prev.value == CloudWatchAlarmStateValue::Alarm {
            return Verdict::Ignore(format!(
                "alarm {name:?} was already in ALARM: not a transition"
            ));
        }
    }
    Verdict::Act {
        key: idempotency_key(name, &state.timestamp),
        at: state.timestamp,
    }
}

/// `<alarm name>@<state timestamp>`: the same transition always yields the same key.
pub fn idempotency_key(alarm: &str, at: &chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{alarm}@{}",
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

fn state_name(v: &CloudWatchAlarmStateValue) -> &'static str {
    match v {
        CloudWatchAlarmStateValue::Ok => "OK",
        CloudWatchAlarmStateValue::Alarm => "ALARM",
        CloudWatchAlarmStateValue::InsufficientData => "INSUFFICIENT_DATA",
        _ => "an unknown state",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Value {
        let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn acts_on_its_own_alarm_going_into_alarm() {
        let v = classify_json(sample("scale-up-alarm.json"), "ews-scale-up-alarm");
        assert_eq!(
            v,
            Verdict::Act {
                key: "ews-scale-up-alarm@2026-01-05T10:15:00.123Z".into(),
                at: "2026-01-05T10:15:00.123Z".parse().unwrap(),
            }
        );
        let v = classify_json(sample("scale-down-alarm.json"), "ews-scale-down-alarm");
        assert!(matches!(v, Verdict::Act { .. }), "{v:?}");
    }

    #[test]
    fn metric_math_alarms_parse() {
        let v = classify_json(sample("scale-up-metric-math.json"), "ews-scale-up-alarm");
        assert!(matches!(v, Verdict::Act { .. }), "{v:?}");
    }

    #[test]
    fn ignores_other_alarms_and_other_transitions() {
        let why = |v: Verdict| match v {
            Verdict::Ignore(r) => r,
            other => panic!("expected Ignore, got {other:?}"),
        };
        assert!(why(classify_json(
            sample("scale-up-alarm.json"),
            "ews-scale-down-alarm"
        ))
        .contains("this function acts on \"ews-scale-down-alarm\""));
        assert!(why(classify_json(
            sample("scale-up-ok.json"),
            "ews-scale-up-alarm"
        ))
        .contains("went to OK, not ALARM"));
        let mut again = sample("scale-up-alarm.json");
        again["alarmData"]["previousState"]["value"] = "ALARM".into();
        assert!(why(classify_json(again, "ews-scale-up-alarm")).contains("not a transition"));
        let mut no_state = sample("scale-up-alarm.json");
        no_state["alarmData"]
            .as_object_mut()
            .unwrap()
            .remove("state");
        assert!(why(classify_json(no_state, "ews-scale-up-alarm")).contains("carries no state"));
        assert!(why(classify_json(
            serde_json::json!({"hello": 1}),
            "ews-scale-up-alarm"
        ))
        .contains("not a CloudWatch alarm"));
    }

    #[test]
    fn the_key_is_stable_across_deliveries() {
        let a = classify_json(sample("scale-up-alarm.json"), "ews-scale-up-alarm");
        let b = classify_json(sample("scale-up-alarm.json"), "ews-scale-up-alarm");
        assert_eq!(a, b);
        let mut later = sample("scale-up-alarm.json");
        later["alarmData"]["state"]["timestamp"] = "2026-01-05T10:20:00.000+0000".into();
        assert_ne!(classify_json(later, "ews-scale-up-alarm"), a);
    }
}
