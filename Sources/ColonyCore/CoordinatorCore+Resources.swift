import ColonyModel
/// Resources per task: the fit check at dispatch, the reservation that keeps large requests
/// from starving, and what is refused.
///
/// The anti-starvation rule: when a node pulls and the oldest ready task of the highest
/// priority that this node could ever run (handler, labels, pool, limits free, and a variant
/// within the node's whole offer) does not fit now for lack of free cpus or resources, the
/// node reserves that variant for it: other tasks only take what stays free beyond the
/// reservation (a whole id or an amount it needs is not handed to a smaller task), and nothing
/// is prefetched into the reserved pool meanwhile. Every node
/// reserves for at most that one task, so the wait is bounded by the run time of the attempts
/// the node held when the reservation began: no new attempt eats into it, and as they end
/// the task fits. Only a task of a higher priority, or an older one, can take its place.
extension CoordinatorCore {
    /// Alternatives a task may list, resources a node may offer, and ids per resource.
    static let resourceVariantsPerTaskMax = 8
    static let resourcesPerNodeMax = 64
    static let resourceIDsPerNodeMax = 1024

    /// A single plain variant (one cpu, nothing named) asks for nothing: it takes the fast path.
    static func normalized(_ variants: [ResourceVariant]) -> [ResourceVariant] {
        variants.count == 1 && variants[0] == ResourceVariant() ? [] : variants
    }

    /// The first of `variants` that fits in `slotsFree` slots and the free named resources.
    static func firstFitting(_ variants: [ResourceVariant], slotsFree: Int, in fitting: FreeResources) -> ResourceVariant? {
        variants.first { $0.cpus <= slotsFree && fitting.fits($0) }
    }

    /// Sets aside, for the oldest task `node` could run but that does not fit now, what it
    /// needs (see the rule above), by taking it off `free`, `slotsFree` and `fitting`.
    /// Returns the oldest task when it fits now instead: once it is handed out, the caller
    /// looks again (the next oldest may be the one to reserve for).
    @discardableResult
    mutating func reserveForBlockedHead(node: NodeRecord, free: inout PoolCounts, slotsFree: inout PoolCounts,
                                        fitting: inout FreeResources) -> TaskID? {
        let sizes = limitSizes
        let inUse = limitInUse
        let tasks = self.tasks
        let head = ready.head(
            eligible: { key in
                guard let pool = Self.pool(for: key, on: node, limitsInUse: inUse, limitSizes: sizes) else { return false }
                return key.resources.isEmpty || node.firstPossible(key.resources, pool: pool) != nil
            },
            isLive: { tasks[$0]?.state == .queued })
        guard let head, let pool = node.pool(for: head.key) else { return nil }
        if head.key.resources.isEmpty || Self.firstFitting(head.key.resources, slotsFree: slotsFree[pool], in: fitting) != nil {
            return head.id
        }
        guard let variant = node.firstPossible(head.key.resources, pool: pool) else { return nil }
        slotsFree[pool] = max(0, slotsFree[pool] - variant.cpus)
        // No prefetch into the pool either: prefetched tasks would start in the slots as they
        // free up, ahead of the task the node reserves for.
        free[pool] = min(max(0, free[pool] - variant.cpus), slotsFree[pool])
        fitting.reserve(variant)
        return nil
    }

    /// What `node` holds in resource grants (live and abandoned attempts): `cpus` and each
    /// named resource in fixed point; nil for a node not known.
    public func heldResources(node name: String) -> [String: UInt64]? {
        guard let node = nodes[name] else { return nil }
        var held: [String: UInt64] = ["cpus": 0]
        for grant in Array(node.grants.values) + node.abandoned.compactMap(\.grant) {
            held["cpus"]! += UInt64(grant.cpus)
            for resource in grant.resources { held[resource.name, default: 0] += resource.amount }
        }
        return held
    }

    /// A restored task a node reports running keeps the resources it asks for on the books,
    /// when they are free (its cpus always: the node runs it).
    mutating func grantIfFits(_ id: TaskID, options: TaskOptions, node name: String) {
        guard !options.resources.isEmpty, let node = nodes[name] else { return }
        var fitting = FreeResources(offer: node.announcement.resources, use: node.resourceUse)
        let variant = options.resources.first(where: { fitting.fits($0) }) ?? ResourceVariant(cpus: options.resources[0].cpus)
        let grant = ResourceGrant(pool: .thread, cpus: variant.cpus, resources: fitting.take(variant))
        nodes[name]!.grants[id] = grant
        nodes[name]!.resourceUse.add(grant)
    }

    /// `cpus=4,gpus=1 or cpus=16`.
    static func describe(_ variants: [ResourceVariant]) -> String {
        variants.map(\.description).joined(separator: " or ")
    }

    /// The reason a class is unplaceable when only its resources fit no node.
    static func resourcesReason(_ variants: [ResourceVariant]) -> String {
        "no node offers the resources \(describe(variants))"
    }

    /// Refuses a task whose resources no live node could ever give, when some live node has
    /// its handler, labels and pool (with no node, or none with those, it waits like any
    /// task: nodes may join; `colony status` says why it waits).
    func refuseImpossibleResources(_ submission: TaskSubmission, index: Int) throws(Refusal) {
        let variants = Self.normalized(submission.options.resources)
        guard !variants.isEmpty, !nodes.isEmpty else { return }
        let key = ReadyQueue.ClassKey(uses: [], labels: submission.options.requiredLabels, pool: submission.options.pool,
                                      handler: submission.poolHandler ?? submission.handler, resources: variants)
        let candidates = nodes.values.filter { node in
            key.labels.allSatisfy { node.announcement.labels[$0.key] == $0.value } && node.pool(for: key) != nil
        }
        guard !candidates.isEmpty, !candidates.contains(where: { $0.firstPossible(variants, pool: $0.pool(for: key)!) != nil }) else { return }
        let offers = candidates.sorted { $0.announcement.name < $1.announcement.name }.prefix(3).map { node in
            let pool = node.pool(for: key)!
            let slots = switch pool {
            case .process: node.announcement.processSlots
            case .io: node.announcement.ioSlots
            case .thread, .automatic: node.announcement.threadSlots
            }
            return "\(node.announcement.name) offers " + (["cpus=\(slots)"] + node.announcement.resources.sorted { $0.key < $1.key }.map(Self.describe))
                .joined(separator: " ")
        }
        throw .invalidArgument("task \(index): no live node could ever give the resources \(Self.describe(variants)) (\(offers.joined(separator: "; ")))")
    }

    static func describe(_ offer: (key: String, value: ResourceOffer)) -> String {
        switch offer.value {
        case .amount(let amount): "\(offer.key)=\(ResourceAmount.formatCompact(amount))"
        case .ids(let ids): "\(offer.key)=\(ids.joined(separator: ","))"
        }
    }

    private func validateResourceName(_ name: String, owner: String) throws(Refusal) {
        guard !name.isEmpty, name.utf8.count <= bounds.labelBytesMax, name != "cpus" else {
            throw .invalidArgument("\(owner): a resource name must be 1 to \(bounds.labelBytesMax) bytes and not 'cpus' (cpus are slots)")
        }
        try NameCheck.refuseControlCharacters(in: name, "\(owner): resource name")
    }

    func validateResources(_ variants: [ResourceVariant], owner: String) throws(Refusal) {
        guard variants.count <= Self.resourceVariantsPerTaskMax else {
            throw .invalidArgument("\(owner): at most \(Self.resourceVariantsPerTaskMax) resource variants")
        }
        for variant in variants {
            guard variant.cpus >= 1, variant.cpus <= bounds.threadSlotsMax else {
                throw .invalidArgument("\(owner): cpus must be 1 to \(bounds.threadSlotsMax), not \(variant.cpus)")
            }
            guard variant.amounts.count <= bounds.labelsPerTaskMax else {
                throw .invalidArgument("\(owner): at most \(bounds.labelsPerTaskMax) resources per variant")
            }
            for (name, amount) in variant.amounts {
                try validateResourceName(name, owner: owner)
                guard amount > 0 else { throw .invalidArgument("\(owner): \(name)=0: a resource amount must be positive") }
                guard amount <= ResourceAmount.one || amount % ResourceAmount.one == 0 else {
                    throw .invalidArgument("\(owner): \(name)=\(ResourceAmount.format(amount)): an amount above 1 must be whole")
                }
            }
        }
    }

    func validateOffer(_ offer: [String: ResourceOffer]) throws(Refusal) {
        guard offer.count <= Self.resourcesPerNodeMax else {
            throw .invalidArgument("a node may offer at most \(Self.resourcesPerNodeMax) resources")
        }
        for (name, resource) in offer {
            try validateResourceName(name, owner: "a node")
            switch resource {
            case .amount(let amount):
                guard amount > 0 else { throw .invalidArgument("a node: resource \(name) must be a positive amount") }
            case .ids(let ids):
                guard !ids.isEmpty, ids.count <= Self.resourceIDsPerNodeMax, Set(ids).count == ids.count else {
                    throw .invalidArgument("a node: resource \(name) must list 1 to \(Self.resourceIDsPerNodeMax) distinct ids")
                }
                for id in ids {
                    guard !id.isEmpty, id.utf8.count <= bounds.labelBytesMax, !id.contains(",") else {
                        throw .invalidArgument("a node: an id of \(name) must be 1 to \(bounds.labelBytesMax) bytes without a comma")
                    }
                    try NameCheck.refuseControlCharacters(in: id, "a node: resource id")
                }
            }
        }
    }
}

extension CoordinatorCore.NodeRecord {
    /// Slots held per pool, counting each attempt's cpus.
    var holdingWithCpus: CoordinatorCore.PoolCounts {
        var held = holdingByPool
        held.thread += resourceUse.extraCpus.thread
        held.process += resourceUse.extraCpus.process
        held.io += resourceUse.extraCpus.io
        return held
    }

    /// Slots held per pool, without those of tasks that wait for their subtasks.
    var occupyingWithCpus: CoordinatorCore.PoolCounts {
        var held = holdingWithCpus
        guard !announcement.waiting.isEmpty else { return held }
        let waiting = waitingSlots
        held.thread -= waiting.thread
        held.process -= waiting.process
        held.io -= waiting.io
        return held
    }
}

extension CoordinatorCore {
    /// The node's resource books against its grants: sums match, no fungible amount is held
    /// beyond the offer, no id is shared beyond one whole, grants belong to its leases.
    func resourceViolations(node name: String, record node: NodeRecord) -> [String] {
        var problems: [String] = []
        var use = ResourceUse()
        for (id, grant) in node.grants {
            if node.leased[id] == nil { problems.append("node \(name): grant for task \(id), which it does not lease") }
            if node.leasePool[id].map({ $0 != grant.pool }) ?? false { problems.append("node \(name): task \(id) granted in the wrong pool") }
            use.add(grant)
        }
        for abandoned in node.abandoned { if let grant = abandoned.grant { use.add(grant) } }
        if use != node.resourceUse { problems.append("node \(name): resources in use \(node.resourceUse) != grants \(use)") }
        for (resource, used) in use.amounts {
            guard case .amount(let total) = node.announcement.resources[resource] else {
                problems.append("node \(name): holds \(resource), which it does not offer as an amount")
                continue
            }
            if used > total { problems.append("node \(name): \(resource) over-committed: \(used) of \(total)") }
        }
        for (resource, shares) in use.idShares {
            guard case .ids(let ids) = node.announcement.resources[resource] else {
                problems.append("node \(name): holds ids of \(resource), which it does not offer as ids")
                continue
            }
            for (id, share) in shares {
                if !ids.contains(id) { problems.append("node \(name): \(resource) id \(id) not offered") }
                if share > ResourceAmount.one { problems.append("node \(name): \(resource) id \(id) shared beyond one: \(share)") }
            }
        }
        return problems
    }
}

extension ClusterStatus.Node {
    /// The same node with its grants' named resources as what it holds.
    func holding(_ use: ResourceUse) -> ClusterStatus.Node {
        if use.amounts.isEmpty && use.idShares.isEmpty { return self }
        var held = use.amounts
        for (name, shares) in use.idShares { held[name, default: 0] += shares.values.reduce(0, +) }
        return holding(held)
    }
}
