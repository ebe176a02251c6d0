//! Scaler configuration from the environment (the names the paper's functions use), checked once
//! at cold start so a misconfigured function fails before it is ever invoked.

use crate::policy::{Direction, Formula, Guards, Steps};

/// Default clients per worker step: 80 % of the default worker capacity (100,000), so the fleet
/// scales out with a fifth of every worker left for the minutes a new one takes to boot and fill.
pub const DEFAULT_STEP: u64 = 80_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Which alarm this function answers, i.e. which way it steps.
    pub direction: Direction,
    /// `WS_ASG_NAME`: the worker Auto Scaling group.
    pub asg_name: String,
    /// `SCALE_UP_ALARM`.
    pub scale_up_alarm: String,
    /// `SCALE_DOWN_ALARM`.
    pub scale_down_alarm: String,
    /// `BUSY_ALARM`: the busiest-worker alarm, which the scale-up function answers too.
    pub busy_alarm: Option<String>,
    /// `STEP` (80,000), `HYSTERESIS` (default STEP / 10) and `THRESHOLDS` (`per-worker`, or
    /// `paper`).
    pub steps: Steps,
    /// `SCALE_IN_COOLDOWN_SECS` (300) and `FILL_SECS` (300).
    pub guards: Guards,
    /// `MIN_SIZE` / `MAX_SIZE`: optional bounds, else the group's own.
    pub min_size: Option<u32>,
    pub max_size: Option<u32>,
    /// `REARM_STUCK_AFTER_SECS` (120): a reconcile re-arms this function's alarm when it has
    /// been in ALARM this long, i.e. no invocation is on its way to re-arm it.
    pub rearm_stuck_after: std::time::Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} = {value:?} is invalid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(direction: Direction) -> Result<Config, ConfigError> {
        Config::from_lookup(direction, |k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment in production, a map in tests).
    pub fn from_lookup(
        direction: Direction,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let required = |name: &'static str| -> Result<String, ConfigError> {
            match get(name).map(|v| v.trim().to_string()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(ConfigError::Missing(name)),
            }
        };
        let step: u64 = parse(&get, "STEP")?.unwrap_or(DEFAULT_STEP);
        if step == 0 {
            return Err(invalid("STEP", "0", "must be at least 1"));
        }
        let hysteresis: u64 = parse(&get, "HYSTERESIS")?.unwrap_or(step / 10);
        if hysteresis >= step {
            return Err(invalid(
                "HYSTERESIS",
                &hysteresis.to_string(),
                &format!("must be below STEP ({step}), or scale-down could never fire"),
            ));
        }
        let formula: Formula = parse(&get, "THRESHOLDS")?.unwrap_or_default();
        let guards = Guards {
            scale_in_cooldown_secs: parse(&get, "SCALE_IN_COOLDOWN_SECS")?.unwrap_or(300),
            fill_secs: parse(&get, "FILL_SECS")?.unwrap_or(300),
        };
        let min_size: Option<u32> = parse(&get, "MIN_SIZE")?;
        let max_size: Option<u32> = parse(&get, "MAX_SIZE")?;
        if let (Some(lo), Some(hi)) = (min_size, max_size) {
            if lo > hi {
                return Err(invalid(
                    "MIN_SIZE",
                    &lo.to_string(),
                    &format!("must not exceed MAX_SIZE ({hi})"),
                ));
            }
        }
        let asg_name = required("WS_ASG_NAME")?;
        let scale_up_alarm = required("SCALE_UP_ALARM")?;
        let scale_down_alarm = required("SCALE_DOWN_ALARM")?;
        if scale_up_alarm == scale_down_alarm {
            return Err(invalid(
                "SCALE_DOWN_ALARM",
                &scale_down_alarm,
                "must differ from SCALE_UP_ALARM",
            ));
        }
        let busy_alarm = get("BUSY_ALARM")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        if let Some(busy) = &busy_alarm {
            if busy == &scale_up_alarm || busy == &scale_down_alarm {
                return Err(invalid(
                    "BUSY_ALARM",
                    busy,
                    "must differ from SCALE_UP_ALARM and SCALE_DOWN_ALARM",
                ));
            }
        }
        let rearm_stuck_after =
            std::time::Duration::from_secs(parse(&get, "REARM_STUCK_AFTER_SECS")?.unwrap_or(120));
        Ok(Config {
            direction,
            asg_name,
            scale_up_alarm,
            scale_down_alarm,
            busy_alarm,
            steps: Steps {
                step,
                hysteresis,
                formula,
            },
            guards,
            min_size,
            max_size,
            rearm_stuck_after,
        })
    }

    /// The alarm whose ALARM transition this function acts on.
    pub fn own_alarm(&self) -> &str {
        match self.direction {
            Direction::Up => &self.scale_up_alarm,
            Direction::Down => &self.scale_down_alarm,
        }
    }

    /// Every alarm this function acts on: its own, and for scale-up the busy-worker alarm.
    pub fn own_alarms(&self) -> Vec<&str> {
        let mut v = vec![self.own_alarm()];
        if self.direction == Direction::Up {
            v.extend(self.busy_alarm.as_deref());
        }
        v
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(None),
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) => raw
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: T::Err| invalid(name, &raw, &e.to_string())),
    }
}

fn invalid(name: &'static str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        ("WS_ASG_NAME", "workers"),
        ("SCALE_UP_ALARM", "up"),
        ("SCALE_DOWN_ALARM", "down"),
    ];

    #[test]
    fn defaults() {
        let c = Config::from_lookup(Direction::Up, lookup(&BASE)).unwrap();
        assert_eq!(c.asg_name, "workers");
        assert_eq!(c.own_alarm(), "up");
        assert_eq!(
            c.steps,
            Steps {
                step: 80_000,
                hysteresis: 8_000,
                formula: Formula::PerWorker,
            }
        );
        assert_eq!(
            c.guards,
            Guards {
                scale_in_cooldown_secs: 300,
                fill_secs: 300
            }
        );
        assert_eq!((c.min_size, c.max_size), (None, None));
        assert_eq!(c.own_alarms(), ["up"]);
        let d = Config::from_lookup(Direction::Down, lookup(&BASE)).unwrap();
        assert_eq!(d.own_alarm(), "down");
    }

    #[test]
    fn overrides() {
        let mut env = BASE.to_vec();
        env.extend([
            ("STEP", "1000"),
            ("HYSTERESIS", "0"),
            ("MIN_SIZE", "3"),
            ("MAX_SIZE", " 6 "),
            ("THRESHOLDS", "paper"),
            ("SCALE_IN_COOLDOWN_SECS", "60"),
            ("FILL_SECS", "0"),
            ("BUSY_ALARM", "busy"),
        ]);
        let c = Config::from_lookup(Direction::Up, lookup(&env)).unwrap();
        assert_eq!(
            c.steps,
            Steps {
                step: 1000,
                hysteresis: 0,
                formula: Formula::Paper,
            }
        );
        assert_eq!(c.guards.scale_in_cooldown_secs, 60);
        assert_eq!(c.own_alarms(), ["up", "busy"]);
        let d = Config::from_lookup(Direction::Down, lookup(&env)).unwrap();
        assert_eq!(d.own_alarms(), ["down"]);
        assert_eq!((c.min_size, c.max_size), (Some(3), Some(6)));
    }

    #[test]
    fn errors_name_the_variable() {
        for missing in ["WS_ASG_NAME", "SCALE_UP_ALARM", "SCALE_DOWN_ALARM"] {
            let env: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = Config::from_lookup(Direction::Up, lookup(&env)).unwrap_err();
            assert_eq!(err, ConfigError::Missing(missing));
            assert!(err.to_string().contains(missing));
        }
        for (name, value) in [
            ("STEP", "lots"),
            ("STEP", "0"),
            ("STEP", "-5"),
            ("HYSTERESIS", "80000"),
            ("MIN_SIZE", "two"),
            ("MAX_SIZE", "1.5"),
            ("THRESHOLDS", "both"),
            ("SCALE_IN_COOLDOWN_SECS", "soon"),
            ("BUSY_ALARM", "up"),
        ] {
            let mut env = BASE.to_vec();
            env.push((name, value));
            let err = Config::from_lookup(Direction::Up, lookup(&env)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
        let env = [
            ("WS_ASG_NAME", "workers"),
            ("SCALE_UP_ALARM", "same"),
            ("SCALE_DOWN_ALARM", "same"),
        ];
        let err = Config::from_lookup(Direction::Up, lookup(&env)).unwrap_err();
        assert!(err.to_string().contains("SCALE_DOWN_ALARM"), "{err}");
        let mut env = BASE.to_vec();
        env.extend([("MIN_SIZE", "5"), ("MAX_SIZE", "4")]);
        let err = Config::from_lookup(Direction::Up, lookup(&env)).unwrap_err();
        assert!(err.to_string().contains("MIN_SIZE"));
    }
}
