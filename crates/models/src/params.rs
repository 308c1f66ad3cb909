use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// One float parameter, flattened, with the path the pruning code addresses it by.
#[derive(Clone, Debug)]
pub struct ParamTensor {
    pub path: String,
    /// burn's identity of the parameter, which optimizer state and parameter groups key on.
    pub id: ParamId,
    pub shape: Vec<usize>,
    pub values: Tensor<1>,
}

/// Every float parameter of `module` in visiting order, named by path (`fc.0.weight`).
pub fn float_params<M: Module>(module: &M) -> Vec<ParamTensor> {
    let mut collector = Collector::default();
    module.visit(&mut collector);
    collector.params
}

/// Parameters that are not exactly zero, over every float tensor of the module.
pub fn count_nonzero<M: Module>(module: &M) -> usize {
    float_params(module)
        .into_iter()
        .map(|p| p.values.not_equal_elem(0.0).int().sum().into_scalar::<i64>() as usize)
        .sum()
}

/// Changes float parameters by path; see [`edit_params`].
pub trait ParamEditor {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

/// Runs `editor` over every float parameter of `module`, with the same paths as
/// [`float_params`].
pub fn edit_params<M: Module, E: ParamEditor>(module: M, editor: &mut E) -> M {
    module.map(&mut Editor { path: PathStack::default(), editor })
}

/// The dotted path of the parameter being visited. Enum variants are left out, so that
/// `Network::Mlp(m)` and `m` name their tensors alike.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.0.push(name.to_string());
        }
    }

    fn exit(&mut self, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.0.pop();
        }
    }

    fn path(&self) -> String {
        self.0.join(".")
    }
}

#[derive(Default)]
struct Collector {
    path: PathStack,
    params: Vec<ParamTensor>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let len: usize = shape.iter().product();
        self.params.push(ParamTensor { path: self.path.path(), id: param.id, shape, values: tensor.reshape([len]) });
    }
}

struct Editor<'a, E> {
    path: PathStack,
    editor: &'a mut E,
}

impl<E: ParamEditor> ModuleMapper for Editor<'_, E> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.editor.edit(&self.path.path(), param)
    }
}

/// Replaces a parameter's value with `edit(value)`, computed outside the autodiff graph, keeping
/// its id (optimizer state stays attached) and its autodiff and gradient flags. Editing the
/// tracked tensor directly would leave a non-leaf parameter whose graph the next backward pass
/// finds already consumed.
pub fn edit_param<const D: usize>(
    param: Param<Tensor<D>>,
    edit: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Param<Tensor<D>> {
    let (id, value, mapper) = param.consume();
    let (autodiff, require_grad) = (value.is_autodiff(), value.is_require_grad());
    let mut edited = edit(value.inner());
    if autodiff {
        edited = edited.autodiff().set_require_grad(require_grad);
    }
    Param::from_mapped_value(id, edited, mapper)
}
