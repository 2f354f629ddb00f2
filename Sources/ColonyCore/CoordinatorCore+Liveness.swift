import ColonyModel

/// How long nodes have been silent, as far as the coordinator could have heard them.
extension CoordinatorCore {
    /// The coordinator could not hear anything for `seconds` (it was stopped): every node's
    /// silence, and every session's, is shortened by that much.
    public mutating func excuseSilence(seconds: Double) {
        guard seconds > 0 else { return }
        // Not for nodes whose connection closed meanwhile: they are gone, not unheard.
        for name in nodes.keys where !nodes[name]!.suspect { nodes[name]!.lastSeen += seconds }
        for session in sessions.keys { if let heard = sessions[session]!.lastHeard { sessions[session]!.lastHeard = heard + seconds } }
    }

    /// `names` have a pull parked here (the coordinator owes them an answer): they are heard
    /// now. A node waiting on the coordinator is not silent; when the coordinator runs late
    /// (a starved CPU answers parked pulls after their deadline), that delay is its own and
    /// must not count against the node. A node whose connection closed is not refreshed.
    public mutating func noteWaiting(nodes names: some Sequence<String>, now: Double) {
        for name in names where nodes[name]?.suspect == false { nodes[name]!.lastSeen = max(nodes[name]!.lastSeen, now) }
    }
}
