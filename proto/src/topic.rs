//! Topic names and the patterns a token grants them with, parsed once at the boundary (a client
//! frame, a publish body, a token claim) so nothing further in has to check a string again.

use std::fmt;
use std::sync::Arc;

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// A topic name: 1 to [`MAX_TOPIC_LEN`] bytes of `A-Z a-z 0-9 . _ : -`, not starting or ending
/// with `.` and without an empty segment (`a..b`), so `prefix.*` patterns are unambiguous.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// Why a string is not a topic (or a pattern).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic is 1 to {MAX_TOPIC_LEN} bytes")]
    Length,
    #[error("a topic uses only A-Z a-z 0-9 . _ : - (found {0:?})")]
    Character(char),
    #[error("a topic has no empty segment: no leading, trailing or doubled '.'")]
    EmptySegment,
}

impl Topic {
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        check(s)?;
        Ok(Topic(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string (cheap to clone into indexes).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

/// Written as its name; read through [`Topic::parse`], so a bad name fails the whole value.
impl serde::Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Topic, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Topic::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check(s: &str) -> Result<(), TopicError> {
    if s.is_empty() || s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::Length);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(TopicError::Character(c));
    }
    if s.split('.').any(str::is_empty) {
        return Err(TopicError::EmptySegment);
    }
    Ok(())
}

/// One grant of a token's `topics` claim: an exact topic, or `prefix.*`, every topic that starts
/// with `prefix.` (`news.*` grants `news.sport` and `news.sport.live`, not `news`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicPattern {
    Exact(Topic),
    Prefix(String),
}

impl TopicPattern {
    pub fn parse(s: &str) -> Result<TopicPattern, TopicError> {
        match s.strip_suffix(".*") {
            Some(prefix) => {
                check(prefix)?;
                Ok(TopicPattern::Prefix(format!("{prefix}.")))
            }
            None => Topic::parse(s).map(TopicPattern::Exact),
        }
    }

    pub fn allows(&self, topic: &Topic) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Prefix(p) => topic.as_str().starts_with(p.as_str()),
        }
    }
}

/// Which topics a session may subscribe to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Grants {
    /// None (a token without a `topics` claim).
    #[default]
    None,
    /// Those the token's `topics` claim lists.
    Listed(Vec<TopicPattern>),
    /// Any (`--topics-open`, for development).
    Any,
}

impl Grants {
    /// Parses a token's `topics` claim; one bad entry refuses the whole claim, so a typo in the
    /// token issuer shows up as a refused token rather than a silently missing grant.
    pub fn from_claim(claim: &[String]) -> Result<Grants, TopicError> {
        if claim.is_empty() {
            return Ok(Grants::None);
        }
        claim
            .iter()
            .map(|s| TopicPattern::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map(Grants::Listed)
    }

    /// These grants and `more` patterns besides (a backend's `connect` answer adds to the
    /// token's); one bad pattern refuses them all, as in a claim.
    pub fn widen(self, more: &[String]) -> Result<Grants, TopicError> {
        let extra = match Grants::from_claim(more)? {
            Grants::Listed(p) => p,
            _ => return Ok(self),
        };
        Ok(match self {
            Grants::Any => Grants::Any,
            Grants::None => Grants::Listed(extra),
            Grants::Listed(mut p) => {
                p.extend(extra);
                Grants::Listed(p)
            }
        })
    }

    pub fn allows(&self, topic: &Topic) -> bool {
        match self {
            Grants::None => false,
            Grants::Listed(p) => p.iter().any(|p| p.allows(topic)),
            Grants::Any => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_at_the_boundary() {
        for ok in [
            "news",
            "news.sport",
            "room:42",
            "a-b_c.D9",
            &"x".repeat(128),
        ] {
            assert!(Topic::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Topic::parse(""), Err(TopicError::Length));
        assert_eq!(Topic::parse(&"x".repeat(129)), Err(TopicError::Length));
        assert_eq!(Topic::parse("a b"), Err(TopicError::Character(' ')));
        assert_eq!(Topic::parse("news.*"), Err(TopicError::Character('*')));
        assert_eq!(Topic::parse(".a"), Err(TopicError::EmptySegment));
        assert_eq!(Topic::parse("a..b"), Err(TopicError::EmptySegment));
        assert_eq!(Topic::parse("a."), Err(TopicError::EmptySegment));
    }

    #[test]
    fn grants_match_exact_names_and_prefixes() {
        let g = Grants::from_claim(&["chat.room1".into(), "news.*".into()]).unwrap();
        let t = |s| Topic::parse(s).unwrap();
        assert!(g.allows(&t("chat.room1")));
        assert!(!g.allows(&t("chat.room2")));
        assert!(g.allows(&t("news.sport")));
        assert!(g.allows(&t("news.sport.live")));
        assert!(!g.allows(&t("news")));
        assert!(!g.allows(&t("newsletter")));
        assert!(!Grants::None.allows(&t("news.sport")));
        assert!(Grants::Any.allows(&t("anything")));
        assert_eq!(Grants::from_claim(&[]), Ok(Grants::None));
        assert!(Grants::from_claim(&["ok".into(), "bad topic".into()]).is_err());
        assert!(Grants::from_claim(&["*".into()]).is_err());
        assert!(Grants::from_claim(&[".*".into()]).is_err());
    }
}
