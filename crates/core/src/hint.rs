//! Server hints: `Retry-After` (RFC 9110 §10.2.3) and the IETF `RateLimit` header fields.
//!
//! Parsing never fails loudly: a value that is not a valid hint is ignored, and the caller falls
//! back to its backoff. Capping a valid hint is the decision's job
//! ([`FailReason::HintExceedsLimit`](crate::FailReason::HintExceedsLimit)), so that a hint
//! beyond the cap reaches the caller instead of being silently shortened.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, RETRY_AFTER};

/// Where a server hint came from.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintSource {
    /// A `Retry-After` header.
    RetryAfter,
    /// A `RateLimit` header field (`r=0;t=N`) or `RateLimit-Reset` with `RateLimit-Remaining: 0`.
    RateLimit,
    /// A vendor rule (a documented reset time, a body field).
    Vendor,
}

/// A delay the server asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHint {
    /// How long to wait, measured from when the response was received.
    pub delay: Duration,
    /// Which header or rule it came from.
    pub source: HintSource,
}

/// Parse one `Retry-After` value: `delay-seconds` or an HTTP-date in any of the three formats
/// of RFC 9110 §5.6.7 (IMF-fixdate, RFC 850, asctime). A date in the past is a zero delay,
/// dates before 1970 included. Anything else (negative, fractional, empty, garbage, a date
/// whose weekday is not its date's) is `None`. A `delay-seconds` too large for a `u64`
/// saturates, so it is still caught by any cap.
///
/// Dates are read by `httpdate`, after the normalisations it does not make (the private
/// `parse_http_date` says why, for each): a year before 1970, a leap second
/// (`23:59:60`, read as the next minute's first second), and the two-digit year of an RFC 850
/// date, read as RFC 9110 says (never more than 50 years ahead of `now`), so that an RFC 850
/// value's meaning depends on the clock it is read at.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use redial_core::hint::parse_retry_after;
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(parse_retry_after(b"120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after(b"Sunday, 06-Nov-94 08:49:47 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after(b"Sun Nov  6 08:49:47 1994", now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after(b"Wed, 31 Dec 1969 23:59:59 GMT", now), Some(Duration::ZERO));
/// // 06-Nov-50 is 1950 here (2050 would be more than 50 years ahead), a Monday.
/// assert_eq!(parse_retry_after(b"Monday, 06-Nov-50 08:49:47 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after(b"-1", now), None);
/// assert_eq!(parse_retry_after(b"soon", now), None);
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let value = trim_ows(value);
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        return Some(Duration::from_secs(parse_digits_saturating(value)));
    }
    let text = std::str::from_utf8(value).ok()?;
    let at = parse_http_date(text, now)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// 400 Gregorian years (146,097 days, exactly 20,871 weeks), in seconds: the calendar repeats
/// with this period, leap days and weekdays included.
const GREGORIAN_CYCLE_SECS: u64 = 146_097 * 86_400;

/// The years `httpdate` reads (its `HttpDate` holds 1970 to 9999).
const HTTPDATE_YEARS: std::ops::RangeInclusive<i64> = 1970..=9999;

/// Where an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, 29 bytes) and an asctime date
/// (`Sun Nov  6 08:49:37 1994`, 24 bytes) hold their year and their time of day. No other
/// text of either length is a date `httpdate` reads (an RFC 850 date has 30 to 33 bytes).
fn year_and_time_at(len: usize) -> Option<(usize, usize)> {
    match len {
        29 => Some((12, 17)),
        24 => Some((20, 11)),
        _ => None,
    }
}

/// An HTTP-date (RFC 9110 §5.6.7), read by `httpdate` 1.0 after normalising what it does not
/// read as RFC 9110 says. Each normalisation only puts digits where digits were (or rewrites
/// an RFC 850 date as the IMF-fixdate it names), so `httpdate` still checks everything else:
/// the format, the ranges, the day of the month, and that the weekday is the date's.
///
/// - **A year before 1970** (`httpdate` refuses it: its dates start at the epoch). The date is
///   read 400·k years later, inside 1970–2369, and moved back by as many 400-year cycles:
///   the Gregorian calendar, weekdays included, repeats every 400 years, so the weekday and
///   leap-day checks are those of the real year. The result is a time before the epoch,
///   which is in the past of any real clock (a delay of zero, RFC 9110 §10.2.3) and is still
///   measured correctly against a clock set before 1970.
/// - **A leap second**, `23:59:60` (RFC 9110's grammar allows a second of 60: "00:00:00 -
///   23:59:60 (leap second)"; `httpdate` requires a second below 60). It is read as the first
///   second of the next minute, `23:59:59` plus one second: that is what POSIX time (and so
///   `SystemTime`) gives a second of 60 (`timegm` counts it as 60 seconds into the minute),
///   and it is the later of the two readings, so a retry never comes before the moment the
///   server named (at `:59` the leap second has not begun). A second of 60 in any other
///   minute is not a leap second (they are inserted at 23:59:60 UTC only) and stays invalid.
/// - **An RFC 850 two-digit year.** `httpdate` reads `00`–`69` as 2000–2069 and `70`–`99` as
///   1970–1999, whatever the clock. RFC 9110 §5.6.7: a recipient "MUST interpret a timestamp
///   that appears to be more than 50 years in the future as representing the most recent
///   year in the past that had the same last two digits". The year used is the latest one
///   ending in those digits whose date is not more than 50 years after `now` (same month,
///   day and time 50 calendar years on): a date read in 2070 as `01-Jan-70` is 2070, not
///   1970, and one read in 1994 as `06-Nov-50` is 1950, not 2050. A clock outside the years
///   `httpdate` writes (before 1970, after 9999) is no server's: `httpdate`'s own reading is
///   used then.
fn parse_http_date(text: &str, now: SystemTime) -> Option<SystemTime> {
    // As httpdate trims.
    let text = text.trim();
    let (mut date, year) = match rfc850_as_imf(text, now) {
        Some(imf) => imf,
        None => {
            let Some((year_at, _)) = year_and_time_at(text.len()) else {
                return httpdate::parse_http_date(text).ok();
            };
            let year = ascii_number(&text.as_bytes()[year_at..year_at + 4])?;
            (text.as_bytes().to_vec(), year)
        }
    };
    let (year_at, time_at) = year_and_time_at(date.len())?;
    let cycles = if HTTPDATE_YEARS.contains(&year) { 0 } else { (year - 1970).div_euclid(400) };
    let year_read = year - 400 * cycles;
    date[year_at..year_at + 4].copy_from_slice(format!("{year_read:04}").as_bytes());
    let leap_second = &date[time_at..time_at + 8] == b"23:59:60";
    if leap_second {
        date[time_at + 6..time_at + 8].copy_from_slice(b"59");
    }
    let at = httpdate::parse_http_date(std::str::from_utf8(&date).ok()?).ok()?;
    let at = at.checked_add(Duration::from_secs(u64::from(leap_second)))?;
    let shift = Duration::from_secs(cycles.unsigned_abs().checked_mul(GREGORIAN_CYCLE_SECS)?);
    if cycles < 0 {
        at.checked_sub(shift)
    } else {
        at.checked_add(shift)
    }
}

/// An RFC 850 date (`Sunday, 06-Nov-94 08:49:37 GMT`) as the IMF-fixdate it names
/// (`Sun, 06 Nov 0000 08:49:37 GMT`, its year field left for the caller), with the year
/// RFC 9110 gives its two digits at `now` (see [`parse_http_date`]). `None` when `text` does
/// not have the shape of an RFC 850 date, or `now` is not a time `httpdate` writes.
fn rfc850_as_imf(text: &str, now: SystemTime) -> Option<(Vec<u8>, i64)> {
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let (day_name, rest) = text.split_once(", ")?;
    let day_name = DAYS.iter().find(|d| **d == day_name)?;
    // "06-Nov-94 08:49:37 GMT"
    let d = rest.as_bytes();
    if d.len() != 22 || d[2] != b'-' || d[6] != b'-' {
        return None;
    }
    let yy = ascii_number(&d[7..9])?;
    if now.duration_since(UNIX_EPOCH).ok()?.as_secs() >= 253_402_300_800 {
        return None;
    }
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let today = httpdate::fmt_http_date(now);
    let t = today.as_bytes();
    let limit = ascii_number(&t[12..16])? + 50;
    let mut year = limit - (limit - yy).rem_euclid(100);
    // In the 50th year, a date later in the year than today is more than 50 years ahead.
    let month = |m: &[u8]| MONTHS.chunks(3).position(|name| name == m);
    if year == limit && (month(&d[3..6])?, &d[0..2], &d[10..18]) > (month(&t[8..11])?, &t[5..7], &t[17..25]) {
        year -= 100;
    }
    let mut imf = Vec::with_capacity(29);
    for part in [&day_name.as_bytes()[..3], b", ", &d[0..2], b" ", &d[3..6], b" 0000", &d[9..]] {
        imf.extend_from_slice(part);
    }
    Some((imf, year))
}

const MONTHS: &[u8; 36] = b"JanFebMarAprMayJunJulAugSepOctNovDec";

/// The value of a field of ASCII digits (two or four here: it cannot overflow).
fn ascii_number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |n, d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
}

/// The `Retry-After` of a response. A field that appears more than once (or as a
/// comma-separated list of `delay-seconds`) yields the longest valid delay: the server's most
/// conservative request wins, and the cap still applies.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for value in headers.get_all(RETRY_AFTER) {
        let bytes = value.as_bytes();
        let parsed = match parse_retry_after(bytes, now) {
            Some(d) => Some(d),
            // "5, 10": a list folded by an intermediary; dates contain commas, so only when
            // every item is delay-seconds.
            None if bytes.contains(&b',') => bytes
                .split(|b| *b == b',')
                .map(|item| {
                    let item = trim_ows(item);
                    (!item.is_empty() && item.iter().all(u8::is_ascii_digit))
                        .then(|| Duration::from_secs(parse_digits_saturating(item)))
                })
                .collect::<Option<Vec<_>>>()
                .and_then(|v| v.into_iter().max()),
            None => None,
        };
        best = best.max(parsed);
    }
    best
}

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The reset delay announced by the IETF RateLimit header fields, when the quota is used up:
/// `RateLimit: "default";r=0;t=30` (draft-ietf-httpapi-ratelimit-headers), or the older
/// separate fields `RateLimit-Remaining: 0` with `RateLimit-Reset: 30`. With several quota
/// policies, the longest reset among those with nothing remaining wins.
pub fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for value in headers.get_all(&RATELIMIT) {
        let Ok(text) = value.to_str() else { continue };
        for item in split_unquoted(text, ',') {
            let (mut remaining, mut reset) = (None, None);
            // The policy's name (a token or a quoted string: its `;` and `,` are not
            // separators), then its parameters.
            for param in split_unquoted(item, ';').skip(1) {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = trim_ows(v.as_bytes());
                let n = (!v.is_empty() && v.iter().all(u8::is_ascii_digit)).then(|| parse_digits_saturating(v));
                match k.trim() {
                    "r" => remaining = n,
                    "t" => reset = n,
                    _ => {}
                }
            }
            if let (Some(0), Some(t)) = (remaining, reset) {
                best = best.max(Some(Duration::from_secs(t)));
            }
        }
    }
    if best.is_none() {
        let digits = |name: &HeaderName| {
            let v = trim_ows(headers.get(name)?.as_bytes());
            (!v.is_empty() && v.iter().all(u8::is_ascii_digit)).then(|| parse_digits_saturating(v))
        };
        if digits(&RATELIMIT_REMAINING) == Some(0) {
            best = digits(&RATELIMIT_RESET).map(Duration::from_secs);
        }
    }
    best
}

/// `text` split at `sep`, except inside a quoted string (RFC 8941: `"…"`, with `\"` and `\\`
/// escapes).
fn split_unquoted(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    let mut cuts = text.char_indices().filter_map(move |(i, c)| {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => return Some(i),
            _ => {}
        }
        None
    });
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let from = start;
        match cuts.next() {
            Some(i) => {
                start = i + sep.len_utf8();
                Some(&text[from..i])
            }
            None => {
                done = true;
                Some(&text[from..])
            }
        }
    })
}

/// The server's hint for a response: `Retry-After` when present and valid, else the RateLimit
/// reset when the quota is exhausted.
pub fn server_hint(headers: &HeaderMap, now: SystemTime) -> Option<ServerHint> {
    if let Some(delay) = retry_after(headers, now) {
        return Some(ServerHint { delay, source: HintSource::RetryAfter });
    }
    rate_limit_reset(headers).map(|delay| ServerHint { delay, source: HintSource::RateLimit })
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn parse_digits_saturating(digits: &[u8]) -> u64 {
    digits.iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    /// Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn retry_after_values() {
        let table: &[(&[u8], Option<Duration>)] = &[
            // delay-seconds
            (b"0", secs(0)),
            (b"2", secs(2)),
            (b"120", secs(120)),
            (b" 7 ", secs(7)),
            (b"\t7", secs(7)),
            (b"007", secs(7)),
            // the three HTTP-date formats, 10 s ahead
            (b"Sun, 06 Nov 1994 08:49:47 GMT", secs(10)),
            (b"Sunday, 06-Nov-94 08:49:47 GMT", secs(10)),
            (b"Sun Nov  6 08:49:47 1994", secs(10)),
            // past dates and now are zero
            (b"Sun, 06 Nov 1994 08:49:37 GMT", secs(0)),
            (b"Sat, 05 Nov 1994 08:49:47 GMT", secs(0)),
            (b"Thu, 01 Jan 1970 00:00:00 GMT", secs(0)),
            // far future dates are long delays, left for the cap to judge
            (b"Fri, 31 Dec 9999 23:59:59 GMT", Some(Duration::from_secs(253_402_300_799 - 784_111_777))),
            // before 1970 is in the past too (httpdate refuses years before 1970), in every
            // format; the weekday and the day of the month are still checked
            (b"Wed, 31 Dec 1969 23:59:59 GMT", secs(0)),
            (b"Mon Jan  1 00:00:00 1900", secs(0)),
            (b"Mon, 01 Jan 0001 00:00:00 GMT", secs(0)),
            (b"Thu, 31 Dec 1969 23:59:59 GMT", None),
            (b"Mon, 29 Feb 1900 00:00:00 GMT", None),
            (b"Sat, 29 Feb 1964 00:00:00 GMT", secs(0)),
            // a leap second, 23:59:60, is the next minute's first second (not :59), in every
            // format; 60 elsewhere is no leap second
            (b"Sun, 06 Nov 1994 23:59:60 GMT", secs(54_623)),
            (b"Sunday, 06-Nov-94 23:59:60 GMT", secs(54_623)),
            (b"Sun Nov  6 23:59:60 1994", secs(54_623)),
            (b"Fri, 31 Dec 9999 23:59:60 GMT", Some(Duration::from_secs(253_402_300_800 - 784_111_777))),
            (b"Sun, 06 Nov 1994 08:49:60 GMT", None),
            (b"Sun, 06 Nov 1994 23:59:61 GMT", None),
            // RFC 850: a two-digit year is never read as more than 50 years ahead (in 1994,
            // "50" is 1950, not httpdate's 2050), and its weekday is checked in the year read
            (b"Monday, 06-Nov-50 08:49:47 GMT", secs(0)),
            (b"Sunday, 06-Nov-50 08:49:47 GMT", None),
            (b"Friday, 06-Nov-43 08:49:47 GMT", Some(Duration::from_secs(2_330_412_587 - 784_111_777))),
            // an RFC 850 date is `dd-Mon-yy` with both dashes, at its full length, or nothing
            (b"Sunday, 06-Nov 94 08:49:47 GMT", None),
            (b"Sunday, 06 Nov-94 08:49:47 GMT", None),
            (b"Sunday, 06-Nov-94", None),
            (b"Sunday, 0", None),
            // huge delay-seconds saturate instead of wrapping or failing
            (b"99999999999", secs(99_999_999_999)),
            (b"99999999999999999999999999", secs(u64::MAX)),
            // garbage is ignored
            (b"-5", None),
            (b"+5", None),
            (b"1.5", None),
            (b"5s", None),
            (b"", None),
            (b"   ", None),
            (b"soon", None),
            (b"Sun, 06 Nov 1994 25:49:47 GMT", None),
            (b"Sun, 32 Nov 1994 08:49:47 GMT", None),
            (b"\xff\xfe", None),
        ];
        for (value, want) in table {
            assert_eq!(parse_retry_after(value, now()), *want, "{:?}", String::from_utf8_lossy(value));
        }
    }

    /// Dates read at other clocks. An RFC 850 date's year is the latest one ending in its two
    /// digits whose date is not more than 50 years after the clock (RFC 9110 §5.6.7).
    #[test]
    fn retry_after_dates_at_other_clocks() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        // Mon, 15 Jan 2024 15:30:00; Thu, 01 Jan 2070 00:00:00; Thu, 31 Dec 2099 23:59:50.
        let (y2024, y2070, y2099) = (at(1_705_332_600), at(3_155_760_000), at(4_102_444_790));
        let eve = UNIX_EPOCH - Duration::from_secs(86_400); // Wed, 31 Dec 1969 00:00:00
        let table: &[(SystemTime, &[u8], Option<Duration>)] = &[
            // before the epoch, a date before 1970 may be ahead
            (eve, b"Wed, 31 Dec 1969 23:59:59 GMT", secs(86_399)),
            (eve, b"Tue, 30 Dec 1969 23:59:59 GMT", secs(0)),
            (y2024, b"Monday, 15-Jan-24 15:30:10 GMT", secs(10)),
            // exactly 50 years ahead is read as ahead (2074, a Monday)...
            (y2024, b"Monday, 15-Jan-74 15:30:00 GMT", secs(1_577_923_200)),
            // ...one second more is the past (1974, a Tuesday)
            (y2024, b"Tuesday, 15-Jan-74 15:30:01 GMT", secs(0)),
            (y2024, b"Monday, 15-Jan-74 15:30:01 GMT", None),
            // a later month of the 50th year is more than 50 years ahead: 1974 (a Friday), not
            // 2074 (a Thursday)
            (y2024, b"Friday, 15-Feb-74 15:30:00 GMT", secs(0)),
            (y2024, b"Thursday, 15-Feb-74 15:30:00 GMT", None),
            // from 2070, "70" is 2070 (a Wednesday), not 1970 (a Thursday)
            (y2070, b"Wednesday, 01-Jan-70 00:00:10 GMT", secs(10)),
            (y2070, b"Thursday, 01-Jan-70 00:00:10 GMT", None),
            // and "00" on the last day of 2099 is 2100
            (y2099, b"Friday, 01-Jan-00 00:00:00 GMT", secs(10)),
            // a clock httpdate cannot write: httpdate's own reading (94 is 1994)
            (eve, b"Sunday, 06-Nov-94 08:49:47 GMT", secs(784_111_787 + 86_400)),
        ];
        for (now, value, want) in table {
            assert_eq!(parse_retry_after(value, *now), *want, "{:?} at {now:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn repeated_retry_after_takes_the_longest_valid() {
        let mut h = HeaderMap::new();
        h.append(RETRY_AFTER, HeaderValue::from_static("garbage"));
        h.append(RETRY_AFTER, HeaderValue::from_static("3"));
        h.append(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:47 GMT"));
        assert_eq!(retry_after(&h, now()), secs(10));
        let mut h = HeaderMap::new();
        h.append(RETRY_AFTER, HeaderValue::from_static("5, 30 ,2"));
        assert_eq!(retry_after(&h, now()), secs(30));
        let mut h = HeaderMap::new();
        h.append(RETRY_AFTER, HeaderValue::from_static("5, soon"));
        assert_eq!(retry_after(&h, now()), None);
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn rate_limit_fields() {
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<Duration>);
        let table: &[Row<'_>] = &[
            (&[("ratelimit", r#""default";r=0;t=30"#)], secs(30)),
            (&[("ratelimit", r#""default";r=5;t=30"#)], None),
            (&[("ratelimit", r#""burst";r=0;t=2, "daily";r=0;t=3600"#)], secs(3600)),
            (&[("ratelimit", r#""burst";r=1;t=2, "daily";r=0;t=60"#)], secs(60)),
            (&[("ratelimit", r#""x";r=0;t=-1"#)], None),
            (&[("ratelimit-remaining", "0"), ("ratelimit-reset", "12")], secs(12)),
            (&[("ratelimit-remaining", "3"), ("ratelimit-reset", "12")], None),
            (&[("ratelimit-reset", "12")], None),
            // The separate fields are integers too, or nothing.
            (&[("ratelimit-remaining", "0"), ("ratelimit-reset", "1.5")], None),
            (&[("ratelimit-remaining", "0"), ("ratelimit-reset", "soon")], None),
            (&[("ratelimit-remaining", "none"), ("ratelimit-reset", "12")], None),
            // A quoted policy name is a name: its `;` and `,` separate nothing.
            (&[("ratelimit", r#""x;r=0;t=60;y";q=10"#)], None),
            (&[("ratelimit", r#""a,b";r=0;t=7"#)], secs(7)),
            (&[("ratelimit", r#""a\";r=0;t=9";r=0;t=8"#)], secs(8)),
        ];
        for (headers, want) in table {
            let mut h = HeaderMap::new();
            for (k, v) in *headers {
                h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
            }
            assert_eq!(rate_limit_reset(&h), *want, "{headers:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_ratelimit() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit", HeaderValue::from_static(r#""default";r=0;t=30"#));
        assert_eq!(
            server_hint(&h, now()),
            Some(ServerHint { delay: Duration::from_secs(30), source: HintSource::RateLimit })
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("4"));
        assert_eq!(
            server_hint(&h, now()),
            Some(ServerHint { delay: Duration::from_secs(4), source: HintSource::RetryAfter })
        );
    }
}
