import ColonyModel

extension ClusterStatus {
    /// Why none of the connected nodes can take a task of `handler` with `options`: no node
    /// at all, none with the handler, none with the labels it requires, none with slots in the
    /// pool it asks for. nil when some node can.
    public func whyNoNodeCanTake(handler: String, options: TaskOptions) -> String? {
        let offers = nodes.map(\.announcement)
        if offers.isEmpty { return "no node is connected" }
        let withHandler = offers.filter { $0.handlers.contains(handler) }
        if withHandler.isEmpty {
            return "no connected node has the handler '\(handler)' (\(offers.count) node(s) connected)"
        }
        let labelled = withHandler.filter { node in options.requiredLabels.allSatisfy { node.labels[$0.key] == $0.value } }
        if labelled.isEmpty {
            let wanted = options.requiredLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return "no connected node with the handler '\(handler)' has the label(s) \(wanted)"
        }
        switch options.pool {
        case .process where !labelled.contains(where: { $0.processSlots > 0 }):
            return "no connected node that can take it has process-pool slots (--pool process)"
        case .thread where !labelled.contains(where: { $0.threadSlots > 0 }):
            return "no connected node that can take it has thread-pool slots (--pool thread)"
        case .io where !labelled.contains(where: { $0.ioSlots > 0 }):
            return "no connected node that can take it has io-pool slots (--pool io)"
        default:
            return nil
        }
    }
}
