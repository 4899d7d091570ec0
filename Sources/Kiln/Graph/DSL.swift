/// A model component. `build` adds the component's nodes and parameters to the graph and
/// returns its output value. Layers are plain values: declaring a model builds nothing.
public protocol Layer: Sendable {
    func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID
}

/// A layer with an explicit module name (its state_dict prefix).
public protocol NamedLayer: Layer {
    var name: String { get }
}

public struct Named: NamedLayer {
    public let name: String
    public let layer: any Layer

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        try g.scoped(name) { try layer.build(x, in: g) }
    }
}

extension Layer {
    /// Gives the layer a module name, as an attribute name does in a PyTorch module.
    public func named(_ name: String) -> Named { Named(name: name, layer: self) }
}

@resultBuilder
public enum LayerBuilder {
    public static func buildExpression(_ layer: any Layer) -> [any Layer] { [layer] }
    public static func buildExpression(_ layers: [any Layer]) -> [any Layer] { layers }
    public static func buildBlock(_ parts: [any Layer]...) -> [any Layer] { parts.flatMap { $0 } }
    public static func buildArray(_ parts: [[any Layer]]) -> [any Layer] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [any Layer]?) -> [any Layer] { part ?? [] }
    public static func buildEither(first part: [any Layer]) -> [any Layer] { part }
    public static func buildEither(second part: [any Layer]) -> [any Layer] { part }
}

/// Builds children in order. Children without a name are named by their index, as in
/// torch.nn.Sequential (`downsample.0`, `downsample.1`).
func buildChain(_ layers: [any Layer], _ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
    var h = x
    for (i, layer) in layers.enumerated() {
        if layer is any NamedLayer {
            h = try layer.build(h, in: g)
        } else {
            h = try g.scoped(String(i)) { try layer.build(h, in: g) }
        }
    }
    return h
}

public struct Sequential: Layer {
    public let layers: [any Layer]

    public init(@LayerBuilder _ body: () -> [any Layer]) { layers = body() }
    public init(_ layers: [any Layer]) { self.layers = layers }

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        try buildChain(layers, x, in: g)
    }
}

/// A residual block: `output(body(x) + shortcut(x))`, the shortcut being the identity when empty.
/// Body, shortcut and output layers share the block's namespace (torchvision's BasicBlock).
public struct Residual: Layer {
    public let body: [any Layer]
    public let shortcut: [any Layer]
    public let output: [any Layer]

    public init(
        @LayerBuilder _ body: () -> [any Layer],
        @LayerBuilder shortcut: () -> [any Layer] = { [] },
        @LayerBuilder output: () -> [any Layer] = { [] }
    ) {
        self.body = body()
        self.shortcut = shortcut()
        self.output = output()
    }

    public func build(_ x: Graph.ValueID, in g: GraphBuilder) throws -> Graph.ValueID {
        let main = try buildChain(body, x, in: g)
        let skip = try buildChain(shortcut, x, in: g)
        let sum = try g.scoped("add") { try g.apply(AddOp(), [main, skip]) }
        return try buildChain(output, sum, in: g)
    }
}
