import ColonyModel

extension CoordinatorCore {
    // MARK: Submitting

    /// Queues `submissions` for `session` in a new job; returns their ids in order.
    /// Refuses the whole batch (changing nothing) if any part is invalid.
    public mutating func submit(_ submissions: [TaskSubmission], session: String, now: Double = 0) throws(Refusal) -> [TaskID] {
        try submit(submissions, session: session, now: now, into: .new).ids
    }

    /// Refuses a submit (before anything changes) if any part of it is invalid.
    func validateSubmit(_ submissions: [TaskSubmission], session: String) throws(Refusal) {
        guard submissions.count <= bounds.tasksPerSubmitMax else {
            throw .invalidArgument("a submit carries \(submissions.count) tasks; the limit is \(bounds.tasksPerSubmitMax)")
        }
        guard !session.isEmpty, session.utf8.count <= bounds.sessionBytesMax else {
            throw .invalidArgument("session id must be 1 to \(bounds.sessionBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: session, "session id")
        for (index, submission) in submissions.enumerated() {
            try validate(submission, index: index)
            try refuseImpossibleResources(submission, index: index)
        }
    }

    /// Queues submissions `validateSubmit` accepted (each carrying its job) for `session`.
    mutating func submitValidated(_ submissions: [TaskSubmission], session: String, now: Double) -> [TaskID] {
        var ids: [TaskID] = []
        ids.reserveCapacity(submissions.count)
        for submission in submissions {
            if let key = submission.key, let existing = keys[key] {
                ids.append(existing)
                continue
            }
            let id = nextID
            nextID += 1
            if let key = submission.key { keys[key] = id }
            var record = TaskRecord(handler: submission.handler, input: submission.input, session: session,
                                    options: submission.options, state: .queued)
            record.options.resources = Self.normalized(submission.options.resources)
            record.poolHandler = submission.poolHandler
            record.key = submission.key
            record.submittedAt = now
            record.job = submission.job
            if submission.job != 0 { record.jobIndex = addToJob(submission.job, task: id) }
            submittedTotal += 1
            if journaling { journal.append(.submitted(id: id, submission: submission, session: session)) }
            var remaining = 0
            var failedDependency: (TaskID, TaskPhase)?
            for dependency in Set(submission.options.after) {
                guard var parent = tasks[dependency] else {
                    if let old = remembered[dependency], old.phase != .succeeded {
                        failedDependency = failedDependency ?? (dependency, old.phase)
                    }
                    continue
                }
                switch parent.state {
                case .finished(.succeeded):
                    parent.readers += 1
                case .finished(let phase):
                    failedDependency = failedDependency ?? (dependency, phase)
                default:
                    parent.dependents.append(id)
                    parent.readers += 1
                    remaining += 1
                }
                tasks[dependency] = parent
            }
            sessions[session, default: SessionRecord()].unfinished += 1
            sessions[session]!.lastHeard = now
            if submission.detached { sessions[session]!.detached = true }
            if let (dependency, phase) = failedDependency {
                record.state = .waiting(remaining: remaining)
                waitingCount += 1
                countJob(record.job, waiting: 1)
                tasks[id] = record
                finish(id, phase: phase == .cancelled ? .cancelled : .failed,
                       error: "dependency \(dependency) \(phase == .cancelled ? "was cancelled" : "failed")", failure: .dependency, now: now)
            } else if remaining > 0 {
                record.state = .waiting(remaining: remaining)
                waitingCount += 1
                countJob(record.job, waiting: 1)
                tasks[id] = record
            } else {
                tasks[id] = record
                ready.push(id, priority: submission.options.priority, key: record.classKey)
            }
            ids.append(id)
        }
        return ids
    }

    /// What a node says of itself ends up in every status reply: bounded like everything else.
    func validateNodeDescription(_ announcement: NodeAnnouncement) throws(Refusal) {
        guard announcement.host.utf8.count <= bounds.labelBytesMax else {
            throw .invalidArgument("node host name must be at most \(bounds.labelBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: announcement.host, "node host name")
        let handlerCount = announcement.handlers.count + announcement.processHandlers.count + announcement.ioHandlers.count
        guard handlerCount <= bounds.handlersPerNodeMax else {
            throw .invalidArgument("a node may announce at most \(bounds.handlersPerNodeMax) handlers (\(handlerCount) given)")
        }
        let named = announcement.handlers + announcement.processHandlers + announcement.ioHandlers
        for name in named where name.isEmpty || name.utf8.count > bounds.handlerNameBytesMax {
            throw .invalidArgument("node handler names must be 1 to \(bounds.handlerNameBytesMax) bytes")
        }
        for name in named {
            try NameCheck.refuseControlCharacters(in: name, "node handler name")
        }
        try validateLabels(announcement.labels, max: bounds.labelsPerNodeMax, owner: "a node")
        try validateOffer(announcement.resources)
    }

    /// At most `max` labels, each key 1 to `labelBytesMax` bytes and each value at most that.
    func validateLabels(_ labels: [String: String], max: Int, owner: String) throws(Refusal) {
        guard labels.count <= max else { throw .invalidArgument("\(owner): at most \(max) labels") }
        for (key, value) in labels
        where key.isEmpty || key.utf8.count > bounds.labelBytesMax || value.utf8.count > bounds.labelBytesMax {
            throw .invalidArgument("\(owner): a label's key must be 1 to \(bounds.labelBytesMax) bytes and its value at most \(bounds.labelBytesMax)")
        }
        for (key, value) in labels {
            try NameCheck.refuseControlCharacters(in: key, "\(owner): label key")
            try NameCheck.refuseControlCharacters(in: value, "\(owner): label value")
        }
    }

    func validate(_ submission: TaskSubmission, index: Int) throws(Refusal) {
        let bytes = submission.handler.utf8.count
        guard bytes > 0, bytes <= bounds.handlerNameBytesMax else {
            throw .invalidArgument("task \(index): handler name must be 1 to \(bounds.handlerNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: submission.handler, "task \(index): handler name")
        if let key = submission.key, key.isEmpty || key.utf8.count > bounds.sessionBytesMax {
            throw .invalidArgument("task \(index): a key must be 1 to \(bounds.sessionBytesMax) bytes")
        }
        if let poolHandler = submission.poolHandler, poolHandler.utf8.count > bounds.handlerNameBytesMax {
            throw .invalidArgument("task \(index): pool handler name must be at most \(bounds.handlerNameBytesMax) bytes")
        }
        if let key = submission.key { try NameCheck.refuseControlCharacters(in: key, "task \(index): key") }
        if let poolHandler = submission.poolHandler { try NameCheck.refuseControlCharacters(in: poolHandler, "task \(index): pool handler name") }
        let options = submission.options
        guard options.after.count <= bounds.dependenciesPerTaskMax else {
            throw .invalidArgument("task \(index): at most \(bounds.dependenciesPerTaskMax) dependencies")
        }
        for dependency in options.after where tasks[dependency] == nil && remembered[dependency] == nil {
            // Ids only name tasks that exist already, so a cycle cannot be written down; an id
            // that is not (or no longer) known is refused rather than waited for forever.
            throw .invalidArgument("task \(index): unknown dependency \(dependency) (not submitted, or finished and fetched)")
        }
        guard options.uses.count <= bounds.limitsPerTaskMax else {
            throw .invalidArgument("task \(index): at most \(bounds.limitsPerTaskMax) limits")
        }
        for name in options.uses {
            try NameCheck.refuseControlCharacters(in: name, "task \(index): limit name")
        }
        for name in options.uses where limitSizes[name] == nil {
            throw .invalidArgument("task \(index): unknown limit '\(name)' (create it first: colony limit set \(name) N)")
        }
        try validateLabels(options.requiredLabels, max: bounds.labelsPerTaskMax, owner: "task \(index)")
        try validateResources(options.resources, owner: "task \(index)")
        guard options.maxAttempts >= 1, options.maxAttempts <= 1000 else {
            throw .invalidArgument("task \(index): maxAttempts must be 1 to 1000")
        }
        if let timeout = options.timeoutSeconds, !(timeout > 0 && timeout.isFinite) {
            throw .invalidArgument("task \(index): timeout must be a positive number of seconds")
        }
    }
}
