import ColonyModel

extension CoordinatorCore {
    // MARK: Counters

    /// The value of a counter (0 if it was never set).
    public func counter(_ name: String) -> Int64 { counters[name] ?? 0 }

    /// Adds `delta`; returns the new value.
    public mutating func addToCounter(_ name: String, _ delta: Int64, key: String? = nil) throws(Refusal) -> Int64 {
        try validateCounterName(name)
        if let done = try answered(key) { return done.value }
        let current = counters[name, default: 0]
        let (sum, overflow) = current.addingReportingOverflow(delta)
        if overflow {
            throw .invalidArgument("counter '\(name)' would overflow: \(current) + \(delta) is outside the 64-bit range (it keeps \(current))")
        }
        counters[name] = sum
        if journaling { journal.append(.counter(name: name, value: sum)) }
        if let key { rememberCounterKey(key, CounterReply(value: sum)) }
        return sum
    }

    /// Sets a counter; returns the previous value.
    public mutating func setCounter(_ name: String, _ value: Int64, key: String? = nil) throws(Refusal) -> Int64 {
        try validateCounterName(name)
        if let done = try answered(key) { return done.value }
        let previous = counters[name] ?? 0
        counters[name] = value
        if journaling { journal.append(.counter(name: name, value: value)) }
        if let key { rememberCounterKey(key, CounterReply(value: previous)) }
        return previous
    }

    /// Sets `new` if the counter is `expected`; returns whether it did and the value now.
    public mutating func compareAndSetCounter(_ name: String, expected: Int64, new: Int64, key: String? = nil) throws(Refusal) -> (swapped: Bool, value: Int64) {
        try validateCounterName(name)
        if let done = try answered(key) { return (done.swapped, done.value) }
        let current = counters[name] ?? 0
        let reply = current == expected ? CounterReply(value: new, swapped: true) : CounterReply(value: current, swapped: false)
        if reply.swapped {
            counters[name] = new
            if journaling { journal.append(.counter(name: name, value: new)) }
        }
        if let key { rememberCounterKey(key, reply) }
        return (reply.swapped, reply.value)
    }

    /// The reply a keyed change already got (a resend), or nil to apply it now.
    func answered(_ key: String?) throws(Refusal) -> CounterReply? {
        guard let key else { return nil }
        guard !key.isEmpty, key.utf8.count <= bounds.sessionBytesMax else {
            throw .invalidArgument("a counter change's key must be 1 to \(bounds.sessionBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: key, "counter change key")
        return counterKeys[key]
    }

    /// Remembers a keyed change's reply (journaled with the change itself), forgetting the
    /// oldest beyond `counterKeysKept`.
    mutating func rememberCounterKey(_ key: String, _ reply: CounterReply, journaled: Bool = true) {
        if counterKeys.updateValue(reply, forKey: key) == nil { counterKeyOrder.append(key) }
        if journaled && journaling { journal.append(.counterKey(key: key, reply: reply)) }
        while counterKeys.count > bounds.counterKeysKept, counterKeyHead < counterKeyOrder.count {
            let oldest = counterKeyOrder[counterKeyHead]
            counterKeyHead += 1
            counterKeys[oldest] = nil
            if journaled && journaling { journal.append(.counterKeyForgotten(oldest)) }
        }
        if counterKeyHead > 4096 && counterKeyHead * 2 > counterKeyOrder.count {
            counterKeyOrder.removeFirst(counterKeyHead)
            counterKeyHead = 0
        }
    }

    /// All counters, by name.
    public var allCounters: [(name: String, value: Int64)] {
        counters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    func validateCounterName(_ name: String) throws(Refusal) {
        guard !name.isEmpty, name.utf8.count <= bounds.counterNameBytesMax else {
            throw .invalidArgument("counter name must be 1 to \(bounds.counterNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: name, "counter name")
    }

    // MARK: Cluster limits

    /// One more holder of `limit`; a new most-at-once is journaled (it survives a restart).
    mutating func takeLimit(_ limit: String) {
        let inUse = limitInUse[limit, default: 0] + 1
        limitInUse[limit] = inUse
        if inUse > limitHighWater[limit] ?? 0 {
            limitHighWater[limit] = inUse
            if journaling { journal.append(.limitHighWater(name: limit, value: inUse)) }
        }
    }

    /// Creates or resizes a limit. Shrinking below the tasks holding it lets them finish;
    /// no new ones start until usage is under the new size.
    public mutating func setLimit(_ name: String, size: Int) throws(Refusal) {
        guard !name.isEmpty, name.utf8.count <= bounds.counterNameBytesMax else {
            throw .invalidArgument("limit name must be 1 to \(bounds.counterNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: name, "limit name")
        // Size 0 would let no task that uses the limit ever run, silently: refused.
        guard size >= 1, size <= 1_000_000 else { throw .invalidArgument("limit size must be 1 to 1000000, not \(size)") }
        limitSizes[name] = size
        if journaling { journal.append(.limit(name: name, size: size)) }
    }

    public var allLimits: [LimitStatus] {
        limitSizes.keys.sorted().map {
            LimitStatus(name: $0, size: limitSizes[$0]!, inUse: limitInUse[$0] ?? 0, highWater: limitHighWater[$0] ?? 0)
        }
    }
}
