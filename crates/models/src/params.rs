use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

/// One float parameter, flattened, with the path the pruning code addresses it by.
#[derive(Clone, Debug)]
pub struct ParamTensor {
    pub path: String,
    pub shape: Vec<usize>,
    pub values: Tensor<1>,
}

/// Every float parameter of `module` in visiting order. Enum variants are left out of the
/// path so that `Network::Mlp(m)` and `m` name their tensors alike (`fc.0.weight`).
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

#[derive(Default)]
struct Collector {
    path: Vec<String>,
    params: Vec<ParamTensor>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let len: usize = shape.iter().product();
        self.params.push(ParamTensor { path: self.path.join("."), shape, values: tensor.reshape([len]) });
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
