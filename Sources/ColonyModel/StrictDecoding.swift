/// A JSON object's key that its type does not know. A misspelt optional field (`timeout` for
/// `timeoutSeconds`) would otherwise be dropped without a word and its default used, so the
/// types that read handler inputs and HTTP bodies refuse it instead.
public struct UnknownFieldError: Error, Sendable, CustomStringConvertible {
    /// The key as it was given.
    public let field: String
    /// Where the object sits in the document (`tasks.1`); empty at the top level.
    public let path: String
    /// The keys the object may have, sorted.
    public let known: [String]

    public var description: String {
        let place = path.isEmpty ? "" : " in \(path)"
        return "unknown field '\(field)'\(place) (fields: \(known.joined(separator: ", ")))"
    }
}

/// Two or more fields given together that exclude each other (a counter change that is both
/// an add and a compare-and-set).
public struct ConflictingFieldsError: Error, Sendable, CustomStringConvertible {
    /// The fields given together, in the type's order.
    public let fields: [String]
    /// The shapes the object may take, for the message.
    public let shapes: String

    public init(fields: [String], shapes: String) {
        self.fields = fields
        self.shapes = shapes
    }

    public var description: String {
        let quoted = fields.map { "'\($0)'" }
        let listed = quoted.count > 1 ? quoted.dropLast().joined(separator: ", ") + " and " + quoted.last! : quoted.joined()
        return "conflicting fields \(listed): give \(shapes)"
    }
}

extension Decoder {
    /// The keyed container of an object that may hold only the keys `Key` names: any other
    /// key throws `UnknownFieldError`. Call it instead of `container(keyedBy:)` in a type's
    /// `init(from:)`.
    public func strictContainer<Key: CodingKey & CaseIterable>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let given = try container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue).sorted()
        if let unknown = given.first(where: { Key(stringValue: $0) == nil }) {
            throw UnknownFieldError(field: unknown, path: codingPath.map(\.jsonPathComponent).joined(separator: "."),
                                    known: Key.allCases.map(\.stringValue).sorted())
        }
        return try container(keyedBy: type)
    }
}

extension CodingKey {
    /// `tasks` for a key, `1` for an array position.
    public var jsonPathComponent: String { intValue.map(String.init) ?? stringValue }
}

/// A key of any name: lists the keys an object really has.
struct AnyCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        intValue = nil
    }

    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}
