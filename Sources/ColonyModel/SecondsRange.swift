/// The seconds a user may give for one setting (a command-line flag, a Swift API argument, a
/// JSON field). Every such number passes through `check` before it becomes milliseconds or
/// a `Duration`: `Int(_:)` and `Duration.seconds(_:)` trap on nan, inf or 1e300, which would
/// take the whole process down for a typo.
public struct SecondsRange: Sendable, Equatable {
    /// Smallest and largest seconds allowed, both finite.
    public let least: Double
    public let most: Double

    public init(_ range: ClosedRange<Double>) {
        precondition(range.lowerBound.isFinite && range.upperBound.isFinite && range.lowerBound >= 0,
                     "a SecondsRange is finite and not negative")
        least = range.lowerBound
        most = range.upperBound
    }

    /// `seconds` when it is a number in this range; otherwise a one-line error naming `setting`.
    public func check(_ seconds: Double, _ setting: String) throws(SecondsOutOfRange) -> Double {
        // Written so that nan fails it: every comparison with nan is false.
        guard seconds >= least && seconds <= most else { throw SecondsOutOfRange(setting: setting, value: seconds, range: self) }
        return seconds
    }

    /// `seconds` in whole milliseconds, rounded up so that a small positive value never
    /// becomes 0 (which means "no timeout" on the wire).
    public func milliseconds(_ seconds: Double, _ setting: String) throws(SecondsOutOfRange) -> Int {
        Int((try check(seconds, setting) * 1000).rounded(.up))
    }

    /// `seconds` as a `Duration`, to the millisecond (rounded up).
    public func duration(_ seconds: Double, _ setting: String) throws(SecondsOutOfRange) -> Duration {
        .milliseconds(try milliseconds(seconds, setting))
    }

    /// An attempt's timeout: at least 1 ms (less rounds to 0, "none"), at most 30 days, well
    /// inside the wire's 32-bit milliseconds (49.7 days).
    public static let taskTimeout = SecondsRange(0.001...2_592_000)
    /// How long a client waits for something (a result): none to 30 days.
    public static let wait = SecondsRange(0...2_592_000)
    /// How long a draining node may finish its running tasks: none to a day.
    public static let drainDeadline = SecondsRange(0...86_400)
}

/// A number of seconds outside the range its setting allows (nan and inf included).
public struct SecondsOutOfRange: Error, Sendable, Equatable, CustomStringConvertible {
    /// The setting as the user knows it: `--timeout`, `timeout_s`, `TaskOptions.timeoutSeconds`.
    public let setting: String
    public let value: Double
    public let range: SecondsRange

    public var description: String {
        "\(setting) must be a number of seconds from \(formatSeconds(range.least)) to \(formatSeconds(range.most)), not \(formatSeconds(value))"
    }
}

/// Seconds for messages: `30` rather than `30.0`; `inf`, `nan` and `1e+300` as Swift prints
/// them (never a trap).
public func formatSeconds(_ seconds: Double) -> String {
    seconds.isFinite && seconds == seconds.rounded() && abs(seconds) < 1e15 ? String(Int(seconds)) : String(seconds)
}
