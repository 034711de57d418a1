//! Issue 19: attacks reproduced against the real gateway (see the README's Security section).
