//! A small ONNX writer: the handful of ONNX protobuf messages the project
//! needs, written by hand with `prost` derives (no `protoc`, no `.proto`
//! files), and a [`Graph`] builder on top.
//!
//! Used by the e5 converter (`ml::e5`) and meant for the small heads the
//! project trains (sentiment logistic regression, a CTR ranker):
//!
//! ```
//! use worker::ml::onnx::{DataType, Dim, Graph};
//! let mut g = Graph::new("sentiment_lr");
//! let x = g.input("embedding", DataType::Float, &[Dim::param("batch"), Dim::fixed(4)]);
//! let w = g.init_f32("w", &[4, 1], &[0.5, -0.25, 1.0, 0.0]);
//! let b = g.init_f32("b", &[1], &[0.1]);
//! let z = g.node("MatMul", &[&x, &w]);
//! let z = g.node("Add", &[&z, &b]);
//! let p = g.node("Sigmoid", &[&z]);
//! g.output_from(&p, "probability", DataType::Float, &[Dim::param("batch"), Dim::fixed(1)]);
//! let bytes = g.to_bytes();
//! assert!(!bytes.is_empty());
//! ```
//!
//! Field numbers follow `onnx/onnx.proto3` (IR version 8 = opset 18).

use prost::Message;

/// IR version written into every model (8 goes with opset 18).
pub const IR_VERSION: i64 = 8;
/// Default opset of the default (`ai.onnx`) domain.
pub const DEFAULT_OPSET: i64 = 18;

// ----------------------------------------------------------------------------
// Protobuf messages (subset of onnx.proto3).
// ----------------------------------------------------------------------------

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// `AttributeProto.AttributeType` values.
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const TENSOR: i32 = 4;
    pub const FLOATS: i32 = 6;
    pub const INTS: i32 = 7;
    pub const STRINGS: i32 = 8;
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(string, tag = "12")]
    pub doc_string: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `TypeProto`; the `value` oneof is written as its only member we use
/// (`tensor_type`, field 1), which is the same on the wire.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<TensorShapeDimension>,
}

/// `TensorShapeProto.Dimension`; the `value` oneof is two optional fields.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeDimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

// ----------------------------------------------------------------------------
// Builder.
// ----------------------------------------------------------------------------

/// `TensorProto.DataType` values used by the project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum DataType {
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
    Bool = 9,
    Float16 = 10,
}

impl DataType {
    fn size(self) -> usize {
        match self {
            DataType::Float | DataType::Int32 => 4,
            DataType::Uint8 | DataType::Int8 | DataType::Bool => 1,
            DataType::Int64 => 8,
            DataType::Float16 => 2,
        }
    }
}

/// One dimension of a graph input or output: fixed or symbolic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Param(String),
}

impl Dim {
    pub fn fixed(n: i64) -> Dim {
        Dim::Fixed(n)
    }
    pub fn param(name: &str) -> Dim {
        Dim::Param(name.to_owned())
    }
}

/// A node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    String(String),
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => TensorShapeDimension {
                dim_value: Some(*n),
                dim_param: None,
            },
            Dim::Param(p) => TensorShapeDimension {
                dim_value: None,
                dim_param: Some(p.clone()),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: String::new(),
    }
}

/// Builds one ONNX graph and serialises it as a model.
///
/// Values are named by strings; [`Graph::node`] names its output after the
/// node (`"{op}_{n}"`), so callers thread the returned names along.
#[derive(Clone, Debug)]
pub struct Graph {
    proto: GraphProto,
    opsets: Vec<(String, i64)>,
    metadata: Vec<(String, String)>,
    doc: String,
    counter: usize,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            proto: GraphProto {
                name: name.to_owned(),
                ..Default::default()
            },
            opsets: vec![(String::new(), DEFAULT_OPSET)],
            metadata: Vec::new(),
            doc: String::new(),
            counter: 0,
        }
    }

    /// Sets the opset of the default domain (18 unless changed).
    pub fn set_opset(&mut self, version: i64) {
        self.opsets[0].1 = version;
    }

    /// Adds a model-level `metadata_props` entry.
    pub fn metadata(&mut self, key: &str, value: &str) {
        self.metadata.push((key.to_owned(), value.to_owned()));
    }

    /// Sets the model's doc string.
    pub fn doc(&mut self, doc: &str) {
        self.doc = doc.to_owned();
    }

    /// Declares a graph input and returns its name.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        self.proto.input.push(value_info(name, elem, dims));
        name.to_owned()
    }

    /// Declares `name` (an existing value) as a graph output.
    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.proto.output.push(value_info(name, elem, dims));
    }

    /// Exposes `value` as a graph output called `name` (through an
    /// `Identity` node when the names differ).
    pub fn output_from(&mut self, value: &str, name: &str, elem: DataType, dims: &[Dim]) {
        if value != name {
            self.node_named("Identity", &[value], &[name], &[]);
        }
        self.output(name, elem, dims);
    }

    /// Adds an initializer from raw little-endian bytes; returns its name.
    pub fn add_initializer(
        &mut self,
        name: &str,
        elem: DataType,
        dims: &[i64],
        raw: Vec<u8>,
    ) -> String {
        let n: i64 = dims.iter().product();
        assert_eq!(
            raw.len(),
            n as usize * elem.size(),
            "initializer {name}: {} bytes for dims {dims:?}",
            raw.len()
        );
        self.proto.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: elem as i32,
            name: name.to_owned(),
            raw_data: raw,
            ..Default::default()
        });
        name.to_owned()
    }

    pub fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_initializer(name, DataType::Float, dims, raw)
    }

    pub fn init_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_initializer(name, DataType::Int64, dims, raw)
    }

    pub fn init_i8(&mut self, name: &str, dims: &[i64], data: &[i8]) -> String {
        let raw = data.iter().map(|v| *v as u8).collect();
        self.add_initializer(name, DataType::Int8, dims, raw)
    }

    pub fn init_u8(&mut self, name: &str, dims: &[i64], data: Vec<u8>) -> String {
        self.add_initializer(name, DataType::Uint8, dims, data)
    }

    /// A float16 initializer from raw IEEE half bit patterns.
    pub fn init_f16_bits(&mut self, name: &str, dims: &[i64], bits: &[u16]) -> String {
        let raw = bits.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_initializer(name, DataType::Float16, dims, raw)
    }

    /// A scalar float constant (0-d initializer) with a generated name.
    pub fn scalar_f32(&mut self, v: f32) -> String {
        let name = self.fresh("const_f");
        self.init_f32(&name, &[], &[v])
    }

    /// A 1-d int64 constant (shapes, axes) with a generated name.
    pub fn const_i64(&mut self, data: &[i64]) -> String {
        let name = self.fresh("const_i");
        self.init_i64(&name, &[data.len() as i64], data)
    }

    /// A new unique name starting with `prefix`.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// Adds a node with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str]) -> String {
        self.node_attrs(op, inputs, &[])
    }

    /// Adds a node with attributes and one output; returns the output name.
    pub fn node_attrs(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.node_n(op, inputs, 1, attrs).pop().expect("one output")
    }

    /// Adds a node with `n_outputs` generated outputs.
    pub fn node_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        n_outputs: usize,
        attrs: &[(&str, Attr)],
    ) -> Vec<String> {
        let base = self.fresh(op);
        let outputs: Vec<String> = (0..n_outputs).map(|i| format!("{base}:{i}")).collect();
        let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        self.push_node(&base, op, inputs, &refs, attrs);
        outputs
    }

    /// Adds a node whose outputs have caller-chosen names.
    pub fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) {
        let base = self.fresh(op);
        self.push_node(&base, op, inputs, outputs, attrs);
    }

    fn push_node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) {
        let attribute = attrs
            .iter()
            .map(|(n, a)| {
                let mut p = AttributeProto {
                    name: (*n).to_owned(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(v) => {
                        p.r#type = attribute_type::INT;
                        p.i = *v;
                    }
                    Attr::Float(v) => {
                        p.r#type = attribute_type::FLOAT;
                        p.f = *v;
                    }
                    Attr::Ints(v) => {
                        p.r#type = attribute_type::INTS;
                        p.ints = v.clone();
                    }
                    Attr::Floats(v) => {
                        p.r#type = attribute_type::FLOATS;
                        p.floats = v.clone();
                    }
                    Attr::String(v) => {
                        p.r#type = attribute_type::STRING;
                        p.s = v.as_bytes().to_vec();
                    }
                }
                p
            })
            .collect();
        self.proto.node.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            name: name.to_owned(),
            op_type: op.to_owned(),
            attribute,
            ..Default::default()
        });
    }

    /// Number of nodes so far.
    pub fn node_count(&self) -> usize {
        self.proto.node.len()
    }

    /// The model message (IR 8, the graph's opsets, producer "lingxi").
    pub fn to_model(&self) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: self
                .opsets
                .iter()
                .map(|(d, v)| OperatorSetIdProto {
                    domain: d.clone(),
                    version: *v,
                })
                .collect(),
            producer_name: "lingxi".to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            domain: String::new(),
            model_version: 1,
            doc_string: self.doc.clone(),
            graph: Some(self.proto.clone()),
            metadata_props: self
                .metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        }
    }

    /// The serialised `.onnx` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_model().encode_to_vec()
    }
}

/// Exports a linear head `x·W + b` over `[batch, n_in]` inputs, followed by
/// `Sigmoid` (one output column) or `Softmax` (several): the shape of the
/// project's sentiment logistic regression. `w` is row-major `[n_in, n_out]`.
pub fn linear_head(
    name: &str,
    input: &str,
    output: &str,
    w: &[f32],
    b: &[f32],
    n_in: usize,
) -> Vec<u8> {
    let n_out = b.len();
    assert_eq!(w.len(), n_in * n_out, "weights must be [n_in, n_out]");
    let mut g = Graph::new(name);
    let x = g.input(
        input,
        DataType::Float,
        &[Dim::param("batch"), Dim::fixed(n_in as i64)],
    );
    let w = g.init_f32("weight", &[n_in as i64, n_out as i64], w);
    let b = g.init_f32("bias", &[n_out as i64], b);
    let z = g.node("MatMul", &[&x, &w]);
    let z = g.node("Add", &[&z, &b]);
    let p = if n_out == 1 {
        g.node("Sigmoid", &[&z])
    } else {
        g.node_attrs("Softmax", &[&z], &[("axis", Attr::Int(-1))])
    };
    g.output_from(
        &p,
        output,
        DataType::Float,
        &[Dim::param("batch"), Dim::fixed(n_out as i64)],
    );
    g.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_prost() {
        let bytes = linear_head("lr", "x", "p", &[1.0, 2.0], &[0.5], 2);
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(m.ir_version, IR_VERSION);
        assert_eq!(m.opset_import[0].version, DEFAULT_OPSET);
        let g = m.graph.unwrap();
        assert_eq!(g.input[0].name, "x");
        assert_eq!(g.output[0].name, "p");
        assert_eq!(g.initializer.len(), 2);
        assert_eq!(g.initializer[0].raw_data.len(), 8);
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Add", "Sigmoid", "Identity"]);
    }

    #[test]
    fn dims_encode_as_value_or_param() {
        let v = value_info("x", DataType::Int64, &[Dim::param("batch"), Dim::fixed(3)]);
        let t = v.r#type.unwrap().tensor_type.unwrap();
        let d = t.shape.unwrap().dim;
        assert_eq!(d[0].dim_param.as_deref(), Some("batch"));
        assert_eq!(d[1].dim_value, Some(3));
        assert_eq!(t.elem_type, 7);
    }
}
