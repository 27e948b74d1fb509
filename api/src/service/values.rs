//! Lenient, typed parsing of import values: a CSV cell is a string, a JSONL
//! value may already be a number, boolean or array.
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;
use uuid::Uuid;

/// China Standard Time: naive timestamps from Chinese systems mean this.
fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// A value as trimmed text; `None` for null or empty.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

pub fn bounded_text(v: &Value, max_chars: usize) -> Result<Option<String>, String> {
    match text(v) {
        Some(s) if s.chars().count() > max_chars => {
            Err(format!("longer than {max_chars} characters"))
        }
        Some(s) if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            Err("contains control characters".into())
        }
        other => Ok(other),
    }
}

pub fn boolean(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        _ => match text(v).map(|s| s.to_lowercase()) {
            None => Ok(None),
            Some(s) => match s.as_str() {
                "true" | "1" | "yes" | "y" | "是" => Ok(Some(true)),
                "false" | "0" | "no" | "n" | "否" => Ok(Some(false)),
                _ => Err(format!("expected true or false, got {s:?}")),
            },
        },
    }
}

pub fn integer(v: &Value, min: i64, max: i64) -> Result<Option<i64>, String> {
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected an integer, got {n}"))?,
        _ => match text(v) {
            None => return Ok(None),
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| format!("expected an integer, got {s:?}"))?,
        },
    };
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(Some(n))
}

pub fn float(v: &Value) -> Result<Option<f64>, String> {
    let x = match v {
        Value::Number(n) => n.as_f64().ok_or("not a number")?,
        _ => match text(v) {
            None => return Ok(None),
            Some(s) => s
                .parse::<f64>()
                .map_err(|_| format!("expected a number, got {s:?}"))?,
        },
    };
    if !x.is_finite() {
        return Err("must be a finite number".into());
    }
    Ok(Some(x))
}

pub fn uuid(v: &Value) -> Result<Option<Uuid>, String> {
    text(v)
        .map(|s| Uuid::parse_str(&s).map_err(|_| format!("expected an id, got {s:?}")))
        .transpose()
}

/// RFC 3339; `YYYY-MM-DD[ T]HH:MM[:SS]` or `YYYY-MM-DD` in China Standard
/// Time; or Unix seconds / milliseconds.
pub fn datetime(v: &Value) -> Result<Option<DateTime<Utc>>, String> {
    let Some(s) = text(v) else { return Ok(None) };
    let parsed = if let Ok(n) = s.parse::<i64>() {
        let ms = if s.len() >= 13 {
            n
        } else {
            n.saturating_mul(1000)
        };
        DateTime::<Utc>::from_timestamp_millis(ms)
    } else if let Ok(d) = DateTime::parse_from_rfc3339(&s) {
        Some(d.with_timezone(&Utc))
    } else {
        [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y/%m/%d %H:%M:%S",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .and_then(|n| cst().from_local_datetime(&n).single())
        .map(|d| d.with_timezone(&Utc))
    };
    let d =
        parsed.ok_or_else(|| format!("expected a time such as 2026-11-27T08:00:00Z, got {s:?}"))?;
    let year = chrono::Datelike::year(&d);
    if !(1990..=2100).contains(&year) {
        return Err(format!("time {s:?} is out of range"));
    }
    Ok(Some(d))
}

/// `a|b|c` or a JSON array of strings; trimmed, deduplicated, order kept.
pub fn tags(v: &Value) -> Result<Option<Vec<String>>, String> {
    let raw: Vec<String> = match v {
        Value::Null => return Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|i| text(i).ok_or_else(|| "tags must be strings".to_owned()))
            .collect::<Result<_, _>>()?,
        _ => match text(v) {
            None => return Ok(None),
            Some(s) => s.split('|').map(|t| t.trim().to_owned()).collect(),
        },
    };
    let mut out: Vec<String> = Vec::new();
    for t in raw.into_iter().filter(|t| !t.is_empty()) {
        if t.chars().count() > 32 {
            return Err(format!("tag {t:?} is longer than 32 characters"));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > 50 {
        return Err("at most 50 tags".into());
    }
    Ok(Some(out))
}

/// `male` / `female` / `unknown`, also from WeChat's sex codes and Chinese.
pub fn gender(v: &Value) -> Result<Option<&'static str>, String> {
    let Some(s) = text(v).map(|s| s.to_lowercase()) else {
        return Ok(None);
    };
    match s.as_str() {
        "male" | "m" | "1" | "男" => Ok(Some("male")),
        "female" | "f" | "2" | "女" => Ok(Some("female")),
        "unknown" | "0" | "未知" => Ok(Some("unknown")),
        _ => Err(format!("expected male, female or unknown, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datetimes_in_every_accepted_shape() {
        let utc = |s: &str| datetime(&json!(s)).unwrap().unwrap().to_rfc3339();
        assert_eq!(utc("2026-11-27T08:00:00Z"), "2026-11-27T08:00:00+00:00");
        assert_eq!(utc("2026-11-27 16:00:00"), "2026-11-27T08:00:00+00:00");
        assert_eq!(utc("1764230400"), "2025-11-27T08:00:00+00:00");
        assert!(datetime(&json!("yesterday")).is_err());
        assert_eq!(datetime(&json!("")).unwrap(), None);
    }

    #[test]
    fn tags_split_trim_and_dedupe() {
        assert_eq!(
            tags(&json!("护肤| 母婴 |护肤||")).unwrap().unwrap(),
            vec!["护肤", "母婴"]
        );
        assert_eq!(tags(&json!(["a", "b"])).unwrap().unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn scalars_reject_garbage_with_a_reason() {
        assert!(integer(&json!("abc"), 0, 120).is_err());
        assert!(integer(&json!(121), 0, 120).is_err());
        assert_eq!(integer(&json!("35"), 0, 120).unwrap(), Some(35));
        assert!(boolean(&json!("maybe")).is_err());
        assert_eq!(gender(&json!("女")).unwrap(), Some("female"));
        assert!(gender(&json!("x")).is_err());
        assert!(float(&json!("NaN")).is_err());
    }
}
