/// A `Duration` as the plain numbers figures, wire fields and timeouts use: one conversion,
/// instead of one `components.attoseconds` formula per call site.
extension Duration {
    /// Seconds, with the fraction.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Whole microseconds, 0 for a negative duration.
    public var inMicroseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000 &+ UInt64(attoseconds / 1_000_000_000_000)
    }

    /// Milliseconds rounded up (a wait of 0.2 ms is a wait of 1 ms, not none), 0 for a negative one.
    public var inMillisecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        return seconds &* 1000 &+ (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}
