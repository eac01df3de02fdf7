//! Keeping secrets out of what the agent hands over: diagnostics bundles and service log lines
//! (`drctl diag`, `drctl logs`) are read by people and often leave the company, and the files
//! they copy hold secrets — the release script logs `-setcookie COOKIE`, and OTP writes the
//! cookie atom into every `erl_crash.dump`.
//!
//! Two layers: the secrets the agent knows (its Erlang cookie, its S3 keys, cookies set in the
//! config files it bundles) are replaced wherever they appear; values that look like secrets
//! whoever they belong to (`-setcookie X`, AWS access key ids) are replaced too.

use std::io::Read;

use regex::bytes::{Regex, Replacer};

use crate::config::AgentConfig;

/// What replaces a secret in text.
pub const REDACTED: &str = "<redacted>";

/// Replaces secrets in bytes, text and streams.
pub struct Scrubber {
    /// The known secrets as one alternation (longest first); `None` when none are known.
    known: Option<Regex>,
    /// Length of the longest known secret.
    longest: usize,
    setcookie: Regex,
    aws_key_id: Regex,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets it holds.
        f.debug_struct("Scrubber")
            .field("knows_secrets", &self.known.is_some())
            .finish_non_exhaustive()
    }
}

/// `-setcookie VALUE` anywhere in `text` (vm.args, a logged command line): the VALUEs.
pub fn setcookie_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("-setcookie")
            && let Some(v) = words.next()
        {
            out.push(v.trim_matches(['\'', '"']).to_string());
        }
    }
    out
}

impl Scrubber {
    /// A scrubber for `secrets` (empty values are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Scrubber {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // longest first: the alternation takes the first that matches
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let longest = secrets.first().map_or(0, String::len);
        let known = (!secrets.is_empty()).then(|| {
            let alternation: Vec<String> = secrets.iter().map(|s| regex::escape(s)).collect();
            Regex::new(&alternation.join("|")).expect("escaped literals form a valid regex")
        });
        Scrubber {
            known,
            longest,
            setcookie: Regex::new(r"(?i)(-setcookie)\s+\S+").expect("static regex"),
            aws_key_id: Regex::new(r"AKIA[0-9A-Z]{16}").expect("static regex"),
        }
    }

    /// The secrets this agent holds (Erlang cookie, S3 keys) plus `extra` (e.g. cookies found in
    /// the config files of a bundle).
    pub fn for_agent(config: &AgentConfig, extra: impl IntoIterator<Item = String>) -> Scrubber {
        let mut secrets: Vec<String> = extra.into_iter().collect();
        if let Some(erlang) = &config.erlang {
            secrets.push(erlang.cookie.expose_secret().to_string());
        }
        if let Some(c) = config
            .backup
            .as_ref()
            .and_then(|b| b.store_options.s3.credentials.as_ref())
        {
            secrets.push(c.access_key_id.clone());
            secrets.push(c.secret_access_key.clone());
        }
        Scrubber::new(secrets)
    }

    /// `data` with every known secret and every secret-looking value replaced by `<redacted>`.
    pub fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        if let Some(known) = &self.known {
            out = replace(known, &out, REDACTED.as_bytes());
        }
        out = replace(&self.setcookie, &out, format!("$1 {REDACTED}").as_bytes());
        replace(&self.aws_key_id, &out, REDACTED.as_bytes())
    }

    /// [`Scrubber::bytes`] for text.
    pub fn text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.bytes(text.as_bytes())).into_owned()
    }

    /// Overwrite every known secret in `buf` with `*` of the same length (for streams whose size
    /// is announced before they are read, such as a tar member).
    pub fn mask_in_place(&self, buf: &mut [u8]) {
        let Some(known) = &self.known else {
            return;
        };
        let spans: Vec<(usize, usize)> =
            known.find_iter(buf).map(|m| (m.start(), m.end())).collect();
        for (start, end) in spans {
            buf[start..end].fill(b'*');
        }
    }

    /// `inner` with every known secret masked as by [`Scrubber::mask_in_place`]; same length.
    pub fn masking_reader<R: Read>(&self, inner: R) -> MaskingReader<'_, R> {
        MaskingReader {
            inner,
            scrubber: self,
            buf: Vec::new(),
            pos: 0,
            ready: 0,
            eof: false,
        }
    }
}

fn replace(re: &Regex, data: &[u8], with: impl Replacer) -> Vec<u8> {
    re.replace_all(data, with).into_owned()
}

/// A reader that masks known secrets, also across the reads of the inner reader: it holds back
/// the last `longest - 1` bytes until it knows no secret starts there.
pub struct MaskingReader<'a, R> {
    inner: R,
    scrubber: &'a Scrubber,
    buf: Vec<u8>,
    /// Next byte of `buf` to hand out.
    pos: usize,
    /// `buf[..ready]` is masked and final.
    ready: usize,
    eof: bool,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: Read> Read for MaskingReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.ready {
                let n = out.len().min(self.ready - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            self.buf.drain(..self.pos);
            self.ready -= self.pos;
            self.pos = 0;
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK, 0);
            let n = self.inner.read(&mut self.buf[start..])?;
            self.buf.truncate(start + n);
            self.scrubber.mask_in_place(&mut self.buf);
            if n == 0 {
                self.eof = true;
                self.ready = self.buf.len();
            } else {
                // a secret starting before this point ends inside `buf`, so it is masked already
                let held = self.scrubber.longest.saturating_sub(1);
                self.ready = self.buf.len().saturating_sub(held);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out `data` a few bytes at a time, so secrets straddle reads.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(self.0.len()).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn known_secrets_and_secret_looking_values_are_replaced() {
        let s = Scrubber::new(["HUSH123".to_string(), "KEYVALUE".to_string()]);
        let out =
            s.text("a HUSH123 b KEYVALUE c -setcookie other AKIAABCDEFGHIJKLMNOP; HUSH123KEYVALUE");
        for secret in ["HUSH123", "KEYVALUE", "other", "AKIAABCDEFGHIJKLMNOP"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.starts_with("a <redacted> b <redacted> c -setcookie <redacted>"));
    }

    #[test]
    fn masking_keeps_the_length_and_catches_secrets_across_reads() {
        let s = Scrubber::new(["COOKIEVALUE".to_string(), "SHORT".to_string()]);
        let mut data = Vec::new();
        for i in 0..2000 {
            data.extend_from_slice(format!("line {i}: 'COOKIEVALUE' and SHORT\n").as_bytes());
        }
        for step in [1, 3, 7, 64, 100_000] {
            let mut out = Vec::new();
            s.masking_reader(Trickle(&data, step))
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out.len(), data.len(), "step {step}");
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("COOKIEVALUE") && !text.contains("SHORT"));
            assert!(text.contains("line 1999: '***********' and *****"));
        }
    }

    #[test]
    fn without_known_secrets_streams_pass_through() {
        let s = Scrubber::new(Vec::new());
        let mut out = Vec::new();
        s.masking_reader(&b"nothing to hide"[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"nothing to hide");
    }

    #[test]
    fn setcookie_values_are_found_in_vm_args_and_command_lines() {
        assert_eq!(
            setcookie_values("-sname erlmcp\n-setcookie 'abc'\n+K true\nexec x -setcookie def -y"),
            ["abc", "def"]
        );
    }
}
