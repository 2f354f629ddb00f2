import ColonyModel

// Resources between the wire and the core (see WireMapping.swift for the rest).

extension ResourceVariant {
    public init(wire: Colony_V1_ResourceVariant) {
        self.init(cpus: max(1, Int(clamping: wire.cpus)), amounts: wire.amounts.mapValues(\.units))
    }

    public var wire: Colony_V1_ResourceVariant {
        var variant = Colony_V1_ResourceVariant()
        variant.cpus = UInt32(clamping: cpus)
        variant.amounts = amounts.mapValues { units in
            var amount = Colony_V1_ResourceAmount()
            amount.units = units
            return amount
        }
        return variant
    }
}

extension ResourceOffer {
    public init?(wire: Colony_V1_ResourceOffer) {
        switch wire.kind {
        case .units(let units): self = .amount(units)
        case .ids(let ids): self = .ids(ids.ids)
        case nil: return nil
        }
    }

    public var wire: Colony_V1_ResourceOffer {
        var offer = Colony_V1_ResourceOffer()
        switch self {
        case .amount(let units): offer.units = units
        case .ids(let ids):
            var list = Colony_V1_ResourceIDs()
            list.ids = ids
            offer.ids = list
        }
        return offer
    }
}

extension AssignedResource {
    public var wire: Colony_V1_AssignedResource {
        var assigned = Colony_V1_AssignedResource()
        assigned.name = name
        assigned.units = amount
        assigned.ids = ids
        return assigned
    }
}

extension NodeAnnouncement {
    /// The node's offer as sent; an offer of neither kind (a newer node's) counts as none.
    public static func resources(wire: [String: Colony_V1_ResourceOffer]) -> [String: ResourceOffer] {
        wire.compactMapValues(ResourceOffer.init(wire:))
    }
}
