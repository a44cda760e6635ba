//! The byte ranges clients send: `Range` on blob reads and
//! `Content-Range` on upload chunks. Pure parsing; the handlers turn the
//! results into 206, 416 and `RANGE_INVALID` answers.

/// A decimal number of digits only (no sign, no spaces), that fits.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        None
    } else {
        s.parse().ok()
    }
}

/// A byte range resolved against a blob's size: `start..end` (end exclusive).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReq {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// Parse a `Range` header against `size`. Only single `bytes=` ranges are
/// served; anything malformed or out of bounds is unsatisfiable (416), never
/// a 500 and never an invalid 206.
pub fn parse_range(h: Option<&str>, size: u64) -> RangeReq {
    let Some(h) = h else { return RangeReq::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeReq::Unsatisfiable;
    };
    if spec.contains(',') {
        return RangeReq::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // suffix: the last n bytes
        match digits(b) {
            Some(0) | None => RangeReq::Unsatisfiable,
            Some(_) if size == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Partial(size.saturating_sub(n), size),
        }
    } else {
        let Some(start) = digits(a) else {
            return RangeReq::Unsatisfiable;
        };
        if start >= size {
            return RangeReq::Unsatisfiable;
        }
        let end = if b.is_empty() {
            size
        } else {
            match digits(b) {
                Some(e) if e >= start => e.saturating_add(1).min(size),
                _ => return RangeReq::Unsatisfiable,
            }
        };
        RangeReq::Partial(start, end)
    }
}

/// `Content-Range: <start>-<end>` (also with a `bytes ` or `bytes=` prefix
/// and a `/<total>` suffix). Returns the inclusive bounds.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.trim().split_once('-')?;
    let (a, b) = (digits(a)?, digits(b)?);
    (b >= a).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Partial(0, 5));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Partial(5, 10));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Partial(5, 10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Partial(7, 10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Partial(0, 10));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("items=0-1"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=a-b"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=+1-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-1"), 0), Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), 10),
            Unsatisfiable
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_content_range("9-3"), None);
        assert_eq!(parse_content_range("-3"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
