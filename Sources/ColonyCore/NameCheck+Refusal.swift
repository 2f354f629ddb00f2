import ColonyModel

extension NameCheck {
    /// Refuses `name` if it holds a control character; `what` says which name it is
    /// ("handler name", "task 3: label key").
    static func refuseControlCharacters(in name: String, _ what: String) throws(CoordinatorCore.Refusal) {
        guard containsControlCharacter(name) else { return }
        throw .invalidArgument("\(what) '\(escaped(name))' contains a control character")
    }
}
