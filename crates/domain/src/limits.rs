//! One source of truth for every limit the service enforces.

/// Longest broker identifier, in characters, after trimming.
pub const BROKER_ID_MAX_CHARS: usize = 64;
/// Longest API key or API secret accepted, in characters (Unicode scalar values).
pub const SECRET_MAX_CHARS: usize = 4096;
/// Longest credential label, in characters.
pub const LABEL_MAX_CHARS: usize = 255;
/// Longest e-mail address, in characters.
pub const EMAIL_MAX_CHARS: usize = 255;
/// Longest first or last name, in characters.
pub const NAME_MAX_CHARS: usize = 120;
/// Longest phone number, in characters.
pub const PHONE_MAX_CHARS: usize = 32;
/// Most credential entries accepted in one update request.
pub const MAX_ENTRIES_PER_UPDATE: usize = 64;
/// Default most broker credentials one user may store (`MAX_CREDENTIALS_PER_USER`): every list
/// decrypts them all, so the count bounds the work of one request.
pub const DEFAULT_MAX_CREDENTIALS_PER_USER: usize = 50;
/// Default page size of paginated lists.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Largest page size of paginated lists.
pub const MAX_PAGE_LIMIT: u32 = 200;
/// How many times an update is re-planned when a concurrent writer changed the same rows.
pub const MAX_WRITE_ATTEMPTS: usize = 100;
/// Number of clear characters a mask keeps at the end of a value.
pub const MASK_CLEAR_SUFFIX: usize = 4;
/// Character a mask replaces hidden characters with (U+2022 BULLET).
pub const MASK_CHAR: char = '\u{2022}';
/// Largest user id accepted, from a token's subject or an explicit registration: 2^53 - 1, the
/// largest integer a JavaScript client reads exactly. Ids outside `1..=MAX_USER_ID` are refused,
/// so that no request can push an id sequence to its end.
pub const MAX_USER_ID: i64 = (1 << 53) - 1;
/// Longest service name in a token's subject.
pub const SERVICE_NAME_MAX_CHARS: usize = 64;
