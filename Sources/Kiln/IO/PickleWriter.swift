/// Writes pickle protocol 2 opcode by opcode: what `TorchCheckpoint.write` emits, and how tests
/// and fuzz seeds build the exact (also hostile) pickles they need.
public struct PickleWriter {
    public private(set) var bytes: [UInt8] = [0x80, 0x02]  // PROTO 2

    public init() {}

    public mutating func raw(_ opcode: UInt8, _ payload: [UInt8] = []) { bytes += [opcode] + payload }

    public mutating func mark() { raw(0x28) }
    public mutating func stop() { raw(0x2E) }
    public mutating func tuple() { raw(0x74) }
    public mutating func emptyTuple() { raw(0x29) }
    public mutating func emptyList() { raw(0x5D) }
    public mutating func emptyDict() { raw(0x7D) }
    public mutating func appends() { raw(0x65) }
    public mutating func setItems() { raw(0x75) }
    public mutating func reduce() { raw(0x52) }
    public mutating func persistentID() { raw(0x51) }
    public mutating func bool(_ value: Bool) { raw(value ? 0x88 : 0x89) }
    public mutating func put(_ key: UInt32) { raw(0x72, le(UInt64(key), 4)) }
    public mutating func get(_ key: UInt32) { raw(0x6A, le(UInt64(key), 4)) }

    /// GLOBAL: `module` and `name` as newline-terminated text.
    public mutating func global(_ module: String, _ name: String) { raw(0x63, Array("\(module)\n\(name)\n".utf8)) }

    public mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        raw(0x58, le(UInt64(utf8.count), 4) + utf8)
    }

    /// BININT1/BININT2/BININT for small values, LONG1 otherwise.
    public mutating func int(_ value: Int) {
        switch value {
        case 0..<256: raw(0x4B, [UInt8(value)])
        case 256..<65536: raw(0x4D, le(UInt64(value), 2))
        case Int(Int32.min)...Int(Int32.max): raw(0x4A, le(UInt64(UInt32(bitPattern: Int32(value))), 4))
        default: raw(0x8A, [8] + le(UInt64(bitPattern: Int64(value)), 8))
        }
    }

    /// `(a, b, …)` from values written by `items`.
    public mutating func tuple(_ items: (inout PickleWriter) -> Void) {
        mark()
        items(&self)
        tuple()
    }

    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`, the
    /// storage a persistent id `('storage', torch.<dtype>Storage, key, 'cpu', count)`.
    public mutating func tensor(storage key: String, dtype: String = "Float", count: Int, offset: Int = 0, shape: [Int], strides: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        tuple { w in
            w.tuple { p in
                p.string("storage")
                p.global("torch", "\(dtype)Storage")
                p.string(key)
                p.string("cpu")
                p.int(count)
            }
            w.persistentID()
            w.int(offset)
            w.tuple { for d in shape { $0.int(d) } }
            w.tuple { for s in strides { $0.int(s) } }
            w.bool(false)
            w.global("collections", "OrderedDict")
            w.emptyTuple()
            w.reduce()
        }
        reduce()
    }

    private func le(_ value: UInt64, _ width: Int) -> [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
}
