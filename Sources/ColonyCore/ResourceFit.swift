import ColonyModel
/// What one dispatched attempt holds on its node beyond its one slot: the rest of its cpus,
/// and its named resources with the ids it was given. Released with the lease, however the
/// lease ends (result, lost node, cancellation, timeout, hand-back, drain).
struct ResourceGrant: Sendable, Hashable {
    var pool: TaskPool
    var cpus: Int
    var resources: [AssignedResource]
}

/// What a node's grants hold together, kept in step with them (`Invariants.swift` recounts).
struct ResourceUse: Sendable, Equatable {
    /// Slots held beyond each lease's one: sum of (cpus - 1) per pool.
    var extraCpus = CoordinatorCore.PoolCounts()
    /// Fungible amounts held, fixed point.
    var amounts: [String: UInt64] = [:]
    /// Share of each id held (at most `ResourceAmount.one`), by resource then id.
    var idShares: [String: [String: UInt64]] = [:]

    mutating func add(_ grant: ResourceGrant) {
        extraCpus[grant.pool] += grant.cpus - 1
        for resource in grant.resources {
            if resource.ids.isEmpty {
                amounts[resource.name, default: 0] += resource.amount
            } else {
                let share = min(resource.amount, ResourceAmount.one)
                for id in resource.ids { idShares[resource.name, default: [:]][id, default: 0] += share }
            }
        }
    }

    mutating func remove(_ grant: ResourceGrant) {
        extraCpus[grant.pool] -= grant.cpus - 1
        for resource in grant.resources {
            if resource.ids.isEmpty {
                amounts[resource.name, default: 0] -= resource.amount
                if amounts[resource.name] == 0 { amounts[resource.name] = nil }
            } else {
                let share = min(resource.amount, ResourceAmount.one)
                for id in resource.ids {
                    idShares[resource.name, default: [:]][id, default: 0] -= share
                    if idShares[resource.name]?[id] == 0 { idShares[resource.name]![id] = nil }
                }
                if idShares[resource.name]?.isEmpty == true { idShares[resource.name] = nil }
            }
        }
    }
}

/// A node's named resources that are free, as dispatch sees them while it hands out tasks:
/// built once per dispatch (only while tasks with resource requests are queued), taken from
/// as tasks are given out, and reduced by a reservation (see `CoordinatorCore+Resources.swift`).
struct FreeResources: Sendable {
    struct IDShare: Sendable {
        var id: String
        var free: UInt64
    }
    private var amounts: [String: UInt64] = [:]
    /// Ids in the order the node offers them.
    private var shares: [String: [IDShare]] = [:]

    init(offer: [String: ResourceOffer], use: ResourceUse) {
        for (name, resource) in offer {
            switch resource {
            case .amount(let total):
                let used = use.amounts[name] ?? 0
                amounts[name] = total > used ? total - used : 0
            case .ids(let ids):
                let used = use.idShares[name] ?? [:]
                shares[name] = ids.map { id in
                    let taken = used[id] ?? 0
                    return IDShare(id: id, free: ResourceAmount.one > taken ? ResourceAmount.one - taken : 0)
                }
            }
        }
    }

    /// Whether the named resources of `variant` fit (its cpus are the caller's to check).
    func fits(_ variant: ResourceVariant) -> Bool {
        for (name, amount) in variant.amounts {
            if let free = amounts[name] {
                if free < amount { return false }
            } else if let ids = shares[name] {
                if amount < ResourceAmount.one {
                    if !ids.contains(where: { $0.free >= amount }) { return false }
                } else if ids.lazy.filter({ $0.free == ResourceAmount.one }).count < Int(amount / ResourceAmount.one) {
                    return false
                }
            } else {
                return false
            }
        }
        return true
    }

    /// Takes `variant`'s resources (it must fit) and says which ids it got. A fraction goes to
    /// the id with the least free share that still holds it, so that fractions pack together
    /// and whole ids stay whole for whole requests; whole ids are taken in the node's order.
    mutating func take(_ variant: ResourceVariant) -> [AssignedResource] {
        var assigned: [AssignedResource] = []
        for (name, amount) in variant.amounts.sorted(by: { $0.key < $1.key }) {
            if amounts[name] != nil {
                amounts[name]! -= amount
                assigned.append(AssignedResource(name: name, amount: amount))
            } else if amount < ResourceAmount.one {
                let index = shares[name]!.indices.filter { shares[name]![$0].free >= amount }
                    .min { shares[name]![$0].free < shares[name]![$1].free }!
                shares[name]![index].free -= amount
                assigned.append(AssignedResource(name: name, amount: amount, ids: [shares[name]![index].id]))
            } else {
                var ids: [String] = []
                for index in shares[name]!.indices where ids.count < Int(amount / ResourceAmount.one) && shares[name]![index].free == ResourceAmount.one {
                    shares[name]![index].free = 0
                    ids.append(shares[name]![index].id)
                }
                assigned.append(AssignedResource(name: name, amount: amount, ids: ids))
            }
        }
        return assigned
    }

    /// Sets aside what is free now of `variant`'s needs (all of it, or what there is), so
    /// that other tasks only take what stays free beyond it.
    mutating func reserve(_ variant: ResourceVariant) {
        for (name, amount) in variant.amounts {
            if let free = amounts[name] {
                amounts[name] = free - min(free, amount)
            } else if shares[name] != nil {
                if amount < ResourceAmount.one {
                    guard let index = shares[name]!.indices.max(by: { shares[name]![$0].free < shares[name]![$1].free }) else { continue }
                    shares[name]![index].free -= min(shares[name]![index].free, amount)
                } else {
                    var left = Int(amount / ResourceAmount.one)
                    for index in shares[name]!.indices where left > 0 && shares[name]![index].free == ResourceAmount.one {
                        shares[name]![index].free = 0
                        left -= 1
                    }
                }
            }
        }
    }
}

extension CoordinatorCore.NodeRecord {
    /// Whether `variant` could run here with nothing else running: the node offers its cpus
    /// in `pool` and its named resources.
    func couldEverFit(_ variant: ResourceVariant, pool: TaskPool) -> Bool {
        let slots = switch pool {
        case .process: announcement.processSlots
        case .io: announcement.ioSlots
        case .thread, .automatic: announcement.threadSlots
        }
        return variant.cpus <= slots && FreeResources(offer: announcement.resources, use: ResourceUse()).fits(variant)
    }

    /// The first of `variants` this node could ever run in `pool`.
    func firstPossible(_ variants: [ResourceVariant], pool: TaskPool) -> ResourceVariant? {
        variants.first { couldEverFit($0, pool: pool) }
    }
}
