/// How long to wait before trying again: `baseSeconds` doubled per failure in a row, at most
/// `maxSeconds`, times a jitter factor in [1 - jitter, 1 + jitter) so that many waiters do not
/// retry in step. The one retry policy: the core's task retries, the node's pulls and the
/// client's requests each hold one with their own numbers.
public struct Backoff: Sendable, Equatable {
    public var baseSeconds: Double
    public var maxSeconds: Double
    /// 0 for none, 0.5 for a factor in [0.5, 1.5).
    public var jitter: Double

    public init(baseSeconds: Double, maxSeconds: Double, jitter: Double = 0) {
        self.baseSeconds = baseSeconds
        self.maxSeconds = maxSeconds
        self.jitter = jitter
    }

    /// The wait after `failures` failures in a row (1 for the first); `unit` is a random number
    /// in [0, 1) (the caller's generator, so that a seeded run replays).
    public func seconds(afterFailures failures: Int, unit: Double = 0.5) -> Double {
        let doublings = Swift.max(0, Swift.min(failures - 1, 60))
        var capped = baseSeconds
        for _ in 0..<doublings where capped < maxSeconds { capped *= 2 }
        capped = Swift.min(maxSeconds, capped)
        return capped * (1 - jitter + 2 * jitter * unit)
    }

    /// The same as a `Duration`.
    public func delay(afterFailures failures: Int, unit: Double = 0.5) -> Duration {
        .nanoseconds(Int64(seconds(afterFailures: failures, unit: unit) * 1e9))
    }
}
