import ColonyModel
import ColonyWire
import Foundation

// Resources as a node sees them: what it offers, what an attempt was given, and how a task
// learns it (its context; an exec command's environment).

extension Colony_V1_Task {
    /// Slots of its pool the task holds on the node (its cpus; 0 on the wire means 1).
    var slotsHeld: Int { max(1, Int(clamping: cpus)) }

    var assignedResources: [AssignedResource] {
        resources.map { AssignedResource(name: $0.name, amount: $0.units, ids: $0.ids) }
    }
}

extension TaskContext {
    /// The ids of resource `name` this attempt was given (empty: none, or a fungible one).
    public func resourceIDs(_ name: String) -> [String] {
        resources.first { $0.name == name }?.ids ?? []
    }

    /// `COLONY_RESOURCE_<NAME>` for each resource (its ids comma-separated, or its amount),
    /// and `CUDA_VISIBLE_DEVICES` for `gpus`: what an exec command is told.
    public var resourceEnvironment: [String: String] {
        var environment: [String: String] = [:]
        for resource in resources {
            let name = String(resource.name.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
            environment["COLONY_RESOURCE_\(name)"] = resource.environmentValue
            if resource.name == "gpus" && !resource.ids.isEmpty { environment["CUDA_VISIBLE_DEVICES"] = resource.ids.joined(separator: ",") }
        }
        return environment
    }
}
