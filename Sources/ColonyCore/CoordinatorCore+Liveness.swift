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
}
