//! When the self-managed certificate changes, decided from what the Secret holds, how long this
//! replica has seen the newest CA in the webhook configuration, and the time. No I/O.
//!
//! The order is what keeps admissions from failing during a rotation: a new CA joins the front
//! of the bundle while the old one stays; the bundle reaches the webhook configuration's
//! `caBundle`; only once this replica has seen it there for the propagation delay (the API
//! server reads webhook configurations through a watch) does the new CA sign a serving
//! certificate. A CA leaves the bundle when it expires, and by then so has everything it signed.

use std::time::Duration;

/// A certificate's validity, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When it was made: its notBefore, less the backdating for slow clocks, which is not part
    /// of the lifetime (with a 30 s lifetime and 60 s of backdating, the last third would
    /// otherwise start at once).
    pub issued: i64,
    pub not_after: i64,
}

impl Window {
    /// Renewal is due in the last third of the lifetime, leaving two thirds' worth of the time
    /// already served to renew, publish and retry.
    pub fn renewal_due(&self, now: i64) -> bool {
        let life = (self.not_after - self.issued).max(0);
        now >= self.not_after - life / 3
    }

    pub fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }
}

/// What a readable Secret holds, as far as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The trusted CAs, newest first; the newest one's key is stored and signs.
    pub cas: Vec<Window>,
    pub leaf: Window,
    /// Which of `cas` signed the serving certificate, if any.
    pub leaf_issuer: Option<usize>,
    /// Whether the serving certificate names exactly the configured names.
    pub leaf_names_match: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The Secret is right as it is.
    Keep,
    /// A new serving certificate is due, but the newest CA has not been trusted long enough.
    Wait,
    /// Nothing usable is stored: a new CA (older readable ones stay trusted) and a certificate.
    Start,
    /// A new CA at the front of the bundle; the serving certificate stays for now.
    NewCa,
    /// A new serving certificate from the newest CA.
    NewLeaf,
    /// Drop expired CAs from the bundle.
    Prune,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationStep {
    pub step: Step,
    /// Why, for the log.
    pub reason: &'static str,
}

fn rotation_step(step: Step, reason: &'static str) -> RotationStep {
    RotationStep { step, reason }
}

/// `published_for`: how long this replica has seen the newest CA in the webhook configuration
/// (`None`: not there yet). Without a webhook configuration to follow, the caller passes
/// `Duration::MAX`.
pub fn next_step(
    stored: Option<&Stored>,
    now: i64,
    published_for: Option<Duration>,
    propagation: Duration,
) -> RotationStep {
    let Some(stored) = stored else {
        return rotation_step(Step::Start, "no usable certificate is stored");
    };
    let Some(newest) = stored.cas.first() else {
        return rotation_step(Step::Start, "the stored bundle has no CA");
    };
    if newest.expired(now) {
        return rotation_step(Step::Start, "the newest CA has expired");
    }
    if newest.renewal_due(now) {
        return rotation_step(Step::NewCa, "the CA is in the last third of its validity");
    }
    let leaf = &stored.leaf;
    let unusable = leaf.expired(now) || stored.leaf_issuer.is_none();
    let due = unusable || stored.leaf_issuer != Some(0) || !stored.leaf_names_match || leaf.renewal_due(now);
    if due {
        let reason = if leaf.expired(now) {
            "the serving certificate has expired"
        } else if stored.leaf_issuer.is_none() {
            "the serving certificate was not signed by a stored CA"
        } else if stored.leaf_issuer != Some(0) {
            "the serving certificate was signed by an older CA"
        } else if !stored.leaf_names_match {
            "the serving certificate's names differ from the configured ones"
        } else {
            "the serving certificate is in the last third of its validity"
        };
        // The newest CA already signed what is served: seen in the configuration is enough.
        // Switching to it needs the full delay, unless nothing usable is served anyway.
        let trusted = match (stored.leaf_issuer, published_for) {
            (_, None) => false,
            (Some(0), Some(_)) => true,
            (_, Some(seen)) => seen >= propagation,
        };
        if unusable || trusted {
            return rotation_step(Step::NewLeaf, reason);
        }
        return rotation_step(Step::Wait, reason);
    }
    if stored.cas[1..].iter().any(|ca| ca.expired(now)) {
        return rotation_step(Step::Prune, "an older CA in the bundle has expired");
    }
    rotation_step(Step::Keep, "the stored certificate is current")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(60);
    const LONG: Option<Duration> = Some(Duration::from_secs(3600));

    fn window(issued: i64, not_after: i64) -> Window {
        Window { issued, not_after }
    }

    /// A CA made at 0 for 900 s, a certificate from it made at 0 for 300 s.
    fn current() -> Stored {
        Stored { cas: vec![window(0, 900)], leaf: window(0, 300), leaf_issuer: Some(0), leaf_names_match: true }
    }

    fn step(stored: Option<&Stored>, now: i64, published_for: Option<Duration>) -> Step {
        next_step(stored, now, published_for, DELAY).step
    }

    #[test]
    fn nothing_stored_starts_and_a_current_secret_is_kept() {
        assert_eq!(step(None, 0, None), Step::Start);
        assert_eq!(step(Some(&Stored { cas: vec![], ..current() }), 0, LONG), Step::Start);
        assert_eq!(step(Some(&current()), 100, LONG), Step::Keep);
        assert_eq!(step(Some(&current()), 199, None), Step::Keep, "kept even before it is seen published");
    }

    #[test]
    fn the_certificate_renews_in_its_last_third() {
        assert_eq!(step(Some(&current()), 199, LONG), Step::Keep);
        assert_eq!(step(Some(&current()), 200, LONG), Step::NewLeaf);
        // Signed by the CA the API server already trusts: seen once is enough.
        assert_eq!(step(Some(&current()), 200, Some(Duration::ZERO)), Step::NewLeaf);
        // Not yet seen in the configuration by this replica (just started, say): wait.
        assert_eq!(step(Some(&current()), 200, None), Step::Wait);
        // Expired: nothing to protect any more.
        assert_eq!(step(Some(&current()), 300, None), Step::NewLeaf);
    }

    #[test]
    fn the_ca_rotates_first_and_signs_only_after_the_propagation_delay() {
        assert_eq!(step(Some(&current()), 600, LONG), Step::NewCa);
        let rotated = Stored {
            cas: vec![window(600, 1500), window(0, 900)],
            leaf: window(500, 800),
            leaf_issuer: Some(1),
            leaf_names_match: true,
        };
        let at = |now, seen| next_step(Some(&rotated), now, seen, DELAY);
        assert_eq!(at(601, None).step, Step::Wait, "not in the webhook configuration yet");
        assert_eq!(at(601, Some(Duration::from_secs(59))).step, Step::Wait);
        let switched = at(601, Some(DELAY));
        assert_eq!(switched.step, Step::NewLeaf);
        assert_eq!(switched.reason, "the serving certificate was signed by an older CA");
    }

    #[test]
    fn expired_cas_leave_the_bundle_and_an_expired_newest_ca_starts_over() {
        let old = Stored { cas: vec![window(600, 1500), window(0, 900)], ..current() };
        let old = Stored { leaf: window(850, 1150), leaf_issuer: Some(0), ..old };
        assert_eq!(step(Some(&old), 899, LONG), Step::Keep);
        assert_eq!(step(Some(&old), 900, LONG), Step::Prune);
        assert_eq!(step(Some(&current()), 900, LONG), Step::Start);
    }

    #[test]
    fn a_certificate_from_no_stored_ca_or_with_other_names_is_replaced() {
        let foreign = Stored { leaf_issuer: None, ..current() };
        assert_eq!(step(Some(&foreign), 10, None), Step::NewLeaf, "serves nothing the bundle trusts");
        let renamed = Stored { leaf_names_match: false, ..current() };
        assert_eq!(
            next_step(Some(&renamed), 10, LONG, DELAY).reason,
            "the serving certificate's names differ from the configured ones"
        );
        assert_eq!(step(Some(&renamed), 10, LONG), Step::NewLeaf);
    }
}
