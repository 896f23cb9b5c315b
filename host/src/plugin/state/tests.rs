use super::*;

/// A plugin chooses the TTL: one past what the clock can represent
/// must not panic the host; it never expires.
#[test]
fn a_ttl_past_the_clock_never_expires() {
    let ns = Namespace::default();
    let forever = Some(Duration::from_millis(u64::MAX));
    ns.set("a", b"1", forever).unwrap();
    assert_eq!(ns.get("a"), Some(b"1".to_vec()));
}

/// A counter's TTL is set when the counter is made: increments keep
/// it, and once it passes the next increment starts a new window.
#[test]
fn a_counter_with_a_ttl_is_a_fixed_window() {
    let ns = Namespace::default();
    let t0 = Instant::now();
    let window = Some(Duration::from_secs(10));
    assert_eq!(ns.increment_at("w", 1, window, t0), Ok(1));
    let later = t0 + Duration::from_secs(9);
    assert_eq!(ns.increment_at("w", 1, window, later), Ok(2));
    assert_eq!(ns.increment_at("w", 1, None, later), Ok(3));
    let next = t0 + Duration::from_secs(10);
    assert_eq!(ns.increment_at("w", 1, window, next), Ok(1), "a new window");
    // Without a TTL a counter never expires.
    assert_eq!(ns.increment_at("n", 1, None, t0), Ok(1));
    let much_later = t0 + Duration::from_secs(1_000_000);
    assert_eq!(ns.increment_at("n", 1, None, much_later), Ok(2));
}

#[test]
fn ttl_expires_and_types_do_not_mix() {
    let ns = Namespace::default();
    ns.set("a", b"1", Some(Duration::from_millis(0))).unwrap();
    assert_eq!(ns.get("a"), None, "a zero TTL is already expired");
    ns.set("b", b"x", None).unwrap();
    assert!(ns.increment("b", 1, None).is_err());
    assert_eq!(ns.increment("c", 2, None), Ok(2));
    assert_eq!(ns.increment("c", -5, None), Ok(-3));
    assert_eq!(ns.get("c"), Some(b"-3".to_vec()));
    assert!(ns.delete("c"));
    assert!(!ns.delete("c"));
}

#[test]
fn bounds_hold() {
    let ns = Namespace::default();
    assert!(
        ns.set(&"k".repeat(limits::MAX_KEY_BYTES + 1), b"", None)
            .is_err()
    );
    assert!(
        ns.set("k", &vec![0; limits::MAX_VALUE_BYTES + 1], None)
            .is_err()
    );
    for i in 0..limits::MAX_KEYS {
        ns.set(&i.to_string(), b"", None).unwrap();
    }
    assert!(ns.set("one-more", b"", None).is_err());
    ns.set("0", b"replacing is fine", None).unwrap();
}

#[test]
fn bucket_refuses_when_empty() {
    let ns = Namespace::default();
    assert!(ns.take("b", 2, 0, 1).unwrap().allowed);
    let second = ns.take("b", 2, 0, 1).unwrap();
    assert!(second.allowed);
    assert_eq!(second.remaining, 0);
    let third = ns.take("b", 2, 0, 1).unwrap();
    assert!(!third.allowed);
    assert_eq!(third.retry_after_ms, u64::MAX);
    let slow = ns.take("s", 1, 10, 1).unwrap();
    assert!(slow.allowed);
    let refused = ns.take("s", 1, 10, 1).unwrap();
    assert!(!refused.allowed);
    assert!(refused.retry_after_ms <= 100, "{refused:?}");
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn full_buckets_expire_and_free_their_keys() {
    let ns = Namespace::default();
    let t0 = Instant::now();
    // 10 tokens, 10 a second: one take leaves 9, full again 100 ms later.
    for i in 0..limits::MAX_KEYS {
        assert!(ns.take_at(&i.to_string(), 10, 10, 1, t0).unwrap().allowed);
    }
    assert!(ns.take_at("new", 10, 10, 1, t0).is_err(), "full");
    assert!(
        ns.take_at("new", 10, 10, 1, t0 + 99 * MS).is_err(),
        "no bucket is full again yet"
    );
    let later = ns.take_at("new", 10, 10, 1, t0 + 100 * MS).unwrap();
    assert_eq!(later, ns.take_at("fresh", 10, 10, 1, t0).unwrap());
    assert_eq!(ns.map.len(), 2, "the full buckets were swept");
    assert_eq!(
        ns.bytes.load(Ordering::Relaxed),
        "new".len() + "fresh".len() + 32
    );
}

#[test]
fn bucket_expires_when_full_again() {
    let t0 = Instant::now();
    let (ns, kept) = (Namespace::default(), Namespace::default());
    for n in [&ns, &kept] {
        // Empty after 10 takes; refilled at 10 a second.
        for _ in 0..10 {
            assert!(n.take_at("b", 10, 10, 1, t0).unwrap().allowed);
        }
        // 5 tokens back after 500 ms; 4 left, full again 600 ms later.
        assert_eq!(
            n.take_at("b", 10, 10, 1, t0 + 500 * MS).unwrap().remaining,
            4
        );
    }
    let slot = ns.map.get("b").unwrap();
    assert!(slot.live(t0 + 1099 * MS), "the expiry moves with each take");
    assert!(!slot.live(t0 + 1100 * MS));
    drop(slot);
    // Once full again the bucket is treated as missing and a take
    // starts a full one: the same answer as the bucket kept all along.
    let t1 = t0 + 1100 * MS;
    let expired = ns.take_at("b", 10, 10, 3, t1).unwrap();
    assert_eq!(expired, kept.take_at("b", 10, 10, 3, t1).unwrap());
    assert_eq!(expired.remaining, 7);
    // Sweeps reclaim full buckets.
    assert!(ns.map.get("b").unwrap().live(t1 + 299 * MS));
    ns.sweep(t1 + 300 * MS);
    assert_eq!(ns.map.len(), 0, "swept");
    assert_eq!(ns.bytes.load(Ordering::Relaxed), 0);
    // Nothing taken from a new bucket: nothing to keep.
    assert!(!ns.take_at("c", 5, 1, 6, t0).unwrap().allowed);
    assert!(ns.map.get("c").is_none());
}

#[test]
fn buckets_that_never_refill_are_kept() {
    let ns = Namespace::default();
    let t0 = Instant::now();
    assert!(ns.take_at("b", 1, 0, 1, t0).unwrap().allowed);
    let much_later = t0 + Duration::from_secs(1_000_000);
    ns.sweep(much_later);
    let refused = ns.take_at("b", 1, 0, 1, much_later).unwrap();
    assert!(!refused.allowed, "{refused:?}");
}

#[test]
fn replacing_near_the_byte_cap_fits() {
    let ns = Namespace::default();
    let big = vec![0; limits::MAX_VALUE_BYTES];
    let mut n = 0;
    while ns.set(&n.to_string(), &big, None).is_ok() {
        n += 1;
    }
    let free = limits::MAX_BYTES - ns.bytes.load(Ordering::Relaxed);
    assert!(free < big.len(), "the last set failed for lack of bytes");
    // Leave 10 bytes free.
    ns.set("f", &vec![0; free - 11], None).unwrap();
    ns.set("0", &big, None).unwrap();
    // The old value's bytes are freed by its replacement: 10 more fit,
    // not 11.
    ns.set("f", &vec![1; free - 1], None).unwrap();
    assert_eq!(ns.bytes.load(Ordering::Relaxed), limits::MAX_BYTES);
    assert!(ns.set("f", &vec![2; free], None).is_err());
    assert_eq!(ns.get("f"), Some(vec![1; free - 1]));
}

#[test]
fn full_namespace_sweeps_only_when_something_expired() {
    let ns = Namespace::default();
    let t0 = Instant::now();
    for i in 2..limits::MAX_KEYS {
        ns.set_at(&i.to_string(), b"", None, t0).unwrap();
    }
    ns.set_at("x", b"", Some(10 * MS), t0).unwrap();
    ns.set_at("y", b"", Some(50 * MS), t0).unwrap();
    for i in 0..100 {
        assert!(ns.set_at(&format!("new{i}"), b"", None, t0).is_err());
        assert!(ns.increment_at(&format!("new{i}"), 1, None, t0).is_err());
    }
    assert_eq!(ns.sweeps.load(Ordering::Relaxed), 0, "nothing expired");
    // x has expired: one sweep frees it.
    ns.set_at("a", b"", None, t0 + 10 * MS).unwrap();
    assert_eq!(ns.sweeps.load(Ordering::Relaxed), 1);
    // y has expired too, but the last sweep was too recent.
    assert!(ns.set_at("b", b"", None, t0 + 60 * MS).is_err());
    assert_eq!(ns.sweeps.load(Ordering::Relaxed), 1);
    ns.set_at("b", b"", None, t0 + 110 * MS).unwrap();
    assert_eq!(ns.sweeps.load(Ordering::Relaxed), 2);
    // Nothing left that expires: no more sweeps, however long it is.
    let much_later = t0 + Duration::from_secs(3600);
    assert!(ns.set_at("c", b"", None, much_later).is_err());
    assert_eq!(ns.sweeps.load(Ordering::Relaxed), 2);
}
