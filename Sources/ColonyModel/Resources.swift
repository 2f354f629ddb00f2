/// Amounts of resources are fixed point: `ResourceAmount.one` is one unit (one GPU, one
/// license, one byte of `mem`), so that `gpus=0.5` is exact and sums never drift.
public enum ResourceAmount {
    public static let one: UInt64 = 10_000
    /// Fewest decimals an amount may carry (below that it is refused, never rounded).
    public static let decimals = 4

    /// Parses `8G`, `64M`, `4`, `0.5` into fixed point: K/M/G/T multiply by 1024^n (byte-ish
    /// amounts); a plain number is taken as is. nil: not an amount (empty, negative, zero,
    /// too many decimals, too large).
    public static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text)
        var multiplier: UInt64 = 1
        if let last = digits.last, let power = "KMGT".firstIndex(of: last.uppercased().first ?? " ") {
            multiplier = 1 << (10 * UInt64("KMGT".distance(from: "KMGT".startIndex, to: power) + 1))
            digits = digits.dropLast()
        }
        let parts = digits.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let wholeText = parts.first, !wholeText.isEmpty, wholeText.allSatisfy(\.isASCIIDigit),
              let whole = UInt64(wholeText) else { return nil }
        var fraction: UInt64 = 0
        if parts.count == 2 {
            let fractionText = parts[1]
            guard !fractionText.isEmpty, fractionText.count <= decimals, fractionText.allSatisfy(\.isASCIIDigit) else { return nil }
            fraction = UInt64(fractionText)! * pow10(decimals - fractionText.count)
        }
        let (scaledWhole, overflowWhole) = whole.multipliedReportingOverflow(by: one)
        let (units, overflowSum) = scaledWhole.addingReportingOverflow(fraction)
        let (amount, overflowUnit) = units.multipliedReportingOverflow(by: multiplier)
        guard !overflowWhole, !overflowSum, !overflowUnit, amount > 0 else { return nil }
        // A byte-ish amount counts whole bytes.
        if multiplier > 1 { return amount / one * one }
        return amount
    }

    /// `0.5`, `2`, `68719476736`: the shortest exact decimal form.
    public static func format(_ amount: UInt64) -> String {
        let whole = amount / one
        var fraction = amount % one
        guard fraction > 0 else { return "\(whole)" }
        var digits = decimals
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        let text = String(fraction)
        return "\(whole)." + String(repeating: "0", count: digits - text.count) + text
    }

    private static func pow10(_ exponent: Int) -> UInt64 {
        var value: UInt64 = 1
        for _ in 0..<exponent { value *= 10 }
        return value
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// What a node offers of one named resource.
public enum ResourceOffer: Sendable, Hashable {
    /// Fungible: an amount (fixed point, see `ResourceAmount`), e.g. `mem=64G`, `licenses=4`.
    case amount(UInt64)
    /// Non-fungible: distinct ids a task is given by name, e.g. `gpus=0,1,2,3`.
    case ids([String])

    /// All of it, in fixed point.
    public var total: UInt64 {
        switch self {
        case .amount(let amount): amount
        case .ids(let ids): UInt64(ids.count) * ResourceAmount.one
        }
    }
}

/// One alternative of what a task asks for: `cpus` slots of its pool and amounts of named
/// resources. A task lists one or more; the first that fits on the pulling node is used.
public struct ResourceVariant: Sendable, Hashable {
    /// Slots of the task's pool it holds while it runs.
    public var cpus: Int
    /// Named resources, in fixed point (see `ResourceAmount`).
    public var amounts: [String: UInt64]
    public init(cpus: Int = 1, amounts: [String: UInt64] = [:]) {
        self.cpus = cpus
        self.amounts = amounts
    }

    /// `cpus=4,gpus=1,mem=8G`: `cpus` is a whole number of slots, the rest amounts.
    public static func parse(_ text: String) -> ResourceVariant? {
        var variant = ResourceVariant()
        var seenCPUs = false
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pair = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard pair.count == 2, !pair[0].isEmpty, variant.amounts[pair[0]] == nil else { return nil }
            if pair[0] == "cpus" {
                guard !seenCPUs, let cpus = Int(pair[1]), cpus >= 1 else { return nil }
                seenCPUs = true
                variant.cpus = cpus
            } else {
                guard let amount = ResourceAmount.parse(pair[1]) else { return nil }
                variant.amounts[pair[0]] = amount
            }
        }
        return variant
    }

    /// `cpus=4,gpus=1`, names sorted.
    public var description: String {
        (["cpus=\(cpus)"] + amounts.sorted { $0.key < $1.key }.map { "\($0.key)=\(ResourceAmount.format($0.value))" })
            .joined(separator: ",")
    }
}

/// What a dispatched attempt was given of one named resource.
public struct AssignedResource: Sendable, Hashable {
    public var name: String
    /// Fixed point (see `ResourceAmount`).
    public var amount: UInt64
    /// The ids it was given (a fraction below one: one id, shared); empty for a fungible resource.
    public var ids: [String]
    public init(name: String, amount: UInt64, ids: [String] = []) {
        self.name = name
        self.amount = amount
        self.ids = ids
    }

    /// What an exec command sees in `COLONY_RESOURCE_<NAME>`: the ids, or the amount.
    public var environmentValue: String { ids.isEmpty ? ResourceAmount.format(amount) : ids.joined(separator: ",") }
}

extension NodeAnnouncement {
    /// The same node offering `resources`.
    public func offering(_ resources: [String: ResourceOffer]) -> NodeAnnouncement {
        var node = self
        node.resources = resources
        return node
    }
}

extension ClusterStatus.Node {
    /// The same node with `held` as what its attempts hold.
    public func holding(_ held: [String: UInt64]) -> ClusterStatus.Node {
        var node = self
        node.resourcesHeld = held
        return node
    }

    /// `gpus 1/2 mem 6G/16G`: held of offered, per resource, names sorted.
    public var resourceColumn: String { ResourceAmount.column(offered: announcement.resources, held: resourcesHeld) }
}

extension ResourceAmount {
    /// `gpus 1/2 mem 6G/16G`: held of offered, per resource, names sorted; `-` for none offered.
    public static func column(offered: [String: ResourceOffer], held: [String: UInt64]) -> String {
        if offered.isEmpty { return "-" }
        return offered.sorted { $0.key < $1.key }.map { name, offer in
            "\(name) \(formatCompact(held[name] ?? 0))/\(formatCompact(offer.total))"
        }.joined(separator: " ")
    }

    /// `16G` for a whole number of GiB (MiB, KiB), else as `format`.
    public static func formatCompact(_ amount: UInt64) -> String {
        let whole = amount / one
        if amount % one == 0 && whole > 0 {
            for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] where whole % (1 << UInt64(shift)) == 0 {
                return "\(whole >> UInt64(shift))\(unit)"
            }
        }
        return format(amount)
    }
}
