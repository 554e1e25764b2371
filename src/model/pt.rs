//! Reads ultralytics YOLOv5 and WongKinYiu yolov7 `.pt` checkpoints without Python.
//!
//! A train.py checkpoint is a torch zip archive whose `data.pkl` pickles a dict holding
//! whole `nn.Module`s, not state_dicts, so candle's `read_pth_tensor_info` finds no tensors
//! in it. Here candle's pickle machine (`Stack`) turns `data.pkl` into an `Object` tree,
//! which is walked the way torch's `state_dict()` walks modules: a module is a BUILD whose
//! state is its `__dict__`; its `_parameters` and `_buffers` hold the tensors (each a
//! `_rebuild_tensor_v2` view into a storage, the archive entry `<dir>data/<key>`) and its
//! `_modules` the submodules. Everything else in `__dict__` (Detect's `anchor_grid` lists,
//! the model's `stride`) is not part of the state_dict and is skipped. The module classes
//! (`models.yolo.DetectionModel`, yolov7's `models.yolo.Model`, `models.common.RepConv`, ...)
//! are never looked at: the names come from the `_modules` keys, as in torch.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use serde_yaml::Value;
use zip::result::ZipError;
use zip::ZipArchive;

/// What a YOLOv5 or yolov7 checkpoint holds, in actyolo's terms.
#[derive(Debug)]
pub struct PtCheckpoint {
    /// The state_dict by ultralytics name (`model.0.conv.weight`), in the dtype stored
    /// (f16 for train.py); BatchNorm's `num_batches_tracked` counters are left out.
    pub tensors: HashMap<String, Tensor>,
    /// The model config dict (`nc`, `depth_multiple`, ..., `backbone`, `head`) in its
    /// original key order; `Null` for a plain state_dict.
    pub yaml: Value,
    /// Class names in index order; empty if the checkpoint has none.
    pub names: Vec<String>,
    pub nc: Option<usize>,
    pub source: WeightsSource,
    /// The last epoch trained (train.py writes -1 once training has finished).
    pub epoch: Option<i64>,
}

/// Which entry of the checkpoint the weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsSource {
    /// `ema`, the moving average of the weights, which ultralytics prefers when present.
    Ema,
    /// `model` (or `state_dict`), or the file itself when it is a model or a state_dict.
    Model,
}

#[derive(Debug, thiserror::Error)]
pub enum PtError {
    #[error("cannot open {}", .path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    // The zip and pickle errors sit mid-sentence, before the hint, so they are fields
    // rather than `source`s (which the error chain would print a second time).
    #[error(
        "{}: not a readable zip archive ({error}): a truncated download, an ONNX export, or a \
         checkpoint saved by torch < 1.6? actyolo reads train.py checkpoints (torch.save zip \
         archives) and state_dicts saved as safetensors",
        .path.display()
    )]
    NotZip { path: PathBuf, error: ZipError },
    #[error(
        "{}: a TorchScript export (torch.jit.save), which holds compiled code rather than the \
         model yaml: use the train.py checkpoint (best.pt or last.pt) instead",
        .path.display()
    )]
    TorchScript { path: PathBuf },
    #[error("{}: no data.pkl in the zip archive, so it is not a torch.save file", .path.display())]
    NoPickle { path: PathBuf },
    #[error(
        "{}: cannot unpickle {entry}: {error} (actyolo reads pickle protocol 2, torch.save's \
         default)",
        .path.display()
    )]
    Pickle {
        path: PathBuf,
        entry: String,
        error: Box<candle_core::Error>,
    },
    #[error(
        "{}: no 'model' or 'ema' entry holding a model or a state_dict (the file holds {found}): \
         pass a YOLOv5 or yolov7 train.py checkpoint, a torch.save(model) file or a state_dict",
        .path.display()
    )]
    NoWeights { path: PathBuf, found: String },
    #[error(
        "{}: no yaml in the model, so its layout is unknown: re-save it from a yolov5 \
         DetectionModel or yolov7 Model built from a model yaml, or save model.state_dict() and \
         give the yaml separately",
        .path.display()
    )]
    NoYaml { path: PathBuf },
    #[error("{}: tensor {tensor}: storage entry {entry} is missing (truncated or edited file?)", .path.display())]
    MissingStorage {
        path: PathBuf,
        tensor: String,
        entry: String,
    },
    #[error(
        "{}: tensor {tensor} is stored as {storage}, which actyolo cannot read: convert the model \
         with .half() or .float() before saving",
        .path.display()
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        storage: String,
    },
    #[error(
        "{}: saved with {order:?} byte order; actyolo reads little-endian checkpoints: re-save it \
         on a little-endian machine",
        .path.display()
    )]
    ByteOrder { path: PathBuf, order: String },
    #[error("{}", .path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: Malformation,
    },
}

/// What is wrong inside a checkpoint that opens as a torch archive.
#[derive(Debug, thiserror::Error)]
pub enum Malformation {
    #[error("cannot read entry {entry} (truncated or damaged file?)")]
    Entry {
        entry: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("module {module:?}: {dict} has a key that is not a string")]
    Key { module: String, dict: &'static str },
    #[error("{0} is not a plain tensor (quantized, or a tensor subclass?)")]
    NotTensor(String),
    #[error("tensor {name}")]
    View {
        name: String,
        #[source]
        source: ViewError,
    },
    #[error("tensor {name}")]
    Tensor {
        name: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("the model yaml holds {0}, which is not plain YAML data")]
    Yaml(String),
    #[error("the class names are neither a list of strings nor an {{index: name}} dict")]
    Names,
    #[error("the class names dict is not indexed 0, 1, ..., n-1")]
    NamesIndex,
}

/// Why a pickled tensor's view into its storage cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("unexpected _rebuild_tensor_v2 arguments")]
    Arguments,
    #[error("unexpected storage id")]
    StorageId,
    #[error("offset, size or stride is not made of non-negative integers")]
    NotIndices,
    #[error("size {shape:?} and stride {strides:?} differ in length")]
    Rank {
        shape: Vec<usize>,
        strides: Vec<usize>,
    },
    #[error("size overflows")]
    SizeOverflow,
    #[error("view overflows")]
    ViewOverflow,
    #[error("view reaches element {last} of a storage of {len}")]
    OutsideStorage { last: usize, len: usize },
    #[error("{bytes} bytes")]
    Memory {
        bytes: usize,
        #[source]
        source: std::collections::TryReserveError,
    },
}

/// Reads a YOLOv5 or yolov7 checkpoint: train.py's {'model', 'ema', 'epoch', ...} dict, a
/// torch.save(model) file, or a state_dict (bare or under 'model' / 'state_dict').
pub fn read_pt(path: &Path) -> Result<PtCheckpoint, PtError> {
    let mut archive = TorchArchive::open(path)?;
    let root = archive.unpickle()?;
    let malformed = |source: Malformation| PtError::Malformed {
        path: path.to_owned(),
        source,
    };
    let (weights, source) = select_weights(&root).ok_or_else(|| PtError::NoWeights {
        path: path.to_owned(),
        found: describe(&root),
    })?;
    let mut tensors = HashMap::new();
    for (name, view) in weights.tensor_views().map_err(malformed)? {
        let tensor = archive.load(&name, &view)?;
        tensors.insert(name, tensor);
    }
    let (yaml, names, nc) = match weights {
        WeightsAt::Module(state) => {
            let yaml = model_yaml(path, state)?;
            let names = class_names(state).map_err(malformed)?;
            let nc = dict_get(state, "nc")
                .and_then(as_usize)
                .or_else(|| yaml_nc(&yaml));
            (yaml, names, nc)
        }
        WeightsAt::StateDict(_) => (Value::Null, Vec::new(), None),
    };
    let epoch = as_dict(&root)
        .and_then(|entries| dict_get(entries, "epoch"))
        .and_then(as_i64);
    Ok(PtCheckpoint {
        tensors,
        yaml,
        names,
        nc,
        source,
        epoch,
    })
}

/// A torch.save zip archive: `<dir>data.pkl`, and `<dir>data/<key>` for each storage.
struct TorchArchive {
    path: PathBuf,
    zip: ZipArchive<BufReader<File>>,
    /// The folder every entry sits in (torch names it after the file, e.g. `last/`).
    dir: String,
}

impl TorchArchive {
    fn open(path: &Path) -> Result<Self, PtError> {
        let path = path.to_owned();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(source) => return Err(PtError::Open { path, source }),
        };
        let zip = match ZipArchive::new(BufReader::new(file)) {
            Ok(zip) => zip,
            Err(error) => return Err(PtError::NotZip { path, error }),
        };
        let dir = zip.file_names().filter_map(Result::ok).find_map(|name| {
            let dir = name.strip_suffix("data.pkl")?;
            (dir.is_empty() || dir.ends_with('/')).then(|| dir.to_owned())
        });
        let Some(dir) = dir else {
            return Err(PtError::NoPickle { path });
        };
        // TorchScript archives also have a data.pkl, next to their constants and code.
        if zip.index_for_name(&format!("{dir}constants.pkl")).is_some() {
            return Err(PtError::TorchScript { path });
        }
        let mut archive = TorchArchive { path, zip, dir };
        archive.check_byte_order()?;
        Ok(archive)
    }

    /// Storages are raw memory dumps in the saving machine's byte order, which recent
    /// torch versions record (archives without the record come from little-endian ones).
    fn check_byte_order(&mut self) -> Result<(), PtError> {
        match self.read_entry("byteorder")? {
            Some(order) if order != b"little" => Err(PtError::ByteOrder {
                path: self.path.clone(),
                order: String::from_utf8_lossy(&order).into_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn unpickle(&mut self) -> Result<Object, PtError> {
        let pickle = self.read_entry("data.pkl")?.unwrap_or_default();
        let mut stack = Stack::empty();
        let parsed = stack
            .read_loop(&mut pickle.as_slice())
            .and_then(|()| stack.finalize());
        parsed.map_err(|e| PtError::Pickle {
            path: self.path.clone(),
            entry: self.entry_name("data.pkl"),
            error: Box::new(e),
        })
    }

    /// The tensor `view` of its storage, with the storage's dtype. Storages are read per
    /// tensor, not cached: in checkpoints every tensor has a storage of its own.
    fn load(&mut self, name: &str, view: &TensorView) -> Result<Tensor, PtError> {
        let Some(dtype) = storage_dtype(&view.storage_class) else {
            return Err(PtError::UnsupportedDtype {
                path: self.path.clone(),
                tensor: name.to_owned(),
                storage: view.storage_class.clone(),
            });
        };
        let storage_entry = format!("data/{}", view.storage_key);
        let Some(storage) = self.read_entry(&storage_entry)? else {
            return Err(PtError::MissingStorage {
                path: self.path.clone(),
                tensor: name.to_owned(),
                entry: self.entry_name(&storage_entry),
            });
        };
        let malformed = |source: Malformation| PtError::Malformed {
            path: self.path.clone(),
            source,
        };
        let bytes = view
            .gather(&storage, dtype.size_in_bytes())
            .map_err(|source| {
                malformed(Malformation::View {
                    name: name.to_owned(),
                    source,
                })
            })?;
        Tensor::from_raw_buffer(&bytes, dtype, &view.shape, &Device::Cpu).map_err(|source| {
            malformed(Malformation::Tensor {
                name: name.to_owned(),
                source,
            })
        })
    }

    fn entry_name(&self, name: &str) -> String {
        format!("{}{name}", self.dir)
    }

    /// The whole entry `<dir><name>`, or None if the archive has no such entry.
    fn read_entry(&mut self, name: &str) -> Result<Option<Vec<u8>>, PtError> {
        let entry = self.entry_name(name);
        let path = self.path.clone();
        let unreadable = |source: Box<dyn std::error::Error + Send + Sync>| PtError::Malformed {
            path,
            source: Malformation::Entry {
                entry: entry.clone(),
                source,
            },
        };
        let mut file = match self.zip.by_name(&entry) {
            Ok(file) => file,
            Err(ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(unreadable(Box::new(e))),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| unreadable(Box::new(e)))?;
        Ok(Some(bytes))
    }
}

/// Where in the unpickled object the weights are.
enum WeightsAt<'a> {
    /// A whole `nn.Module`: its `__dict__`.
    Module(&'a [(Object, Object)]),
    /// A state_dict: name -> tensor, beside entries that are not tensors (`_metadata`).
    StateDict(&'a [(Object, Object)]),
}

impl<'a> WeightsAt<'a> {
    fn find(obj: &'a Object) -> Option<Self> {
        if let Some(state) = module_state(obj) {
            return Some(WeightsAt::Module(state));
        }
        let entries = as_dict(obj)?;
        entries
            .iter()
            .any(|(_, value)| rebuild_tensor_args(value).is_some())
            .then_some(WeightsAt::StateDict(entries))
    }

    /// The state_dict's tensors, by name, as views into their storages.
    fn tensor_views(&self) -> Result<Vec<(String, TensorView)>, Malformation> {
        let mut views = Vec::new();
        match self {
            WeightsAt::Module(state) => module_tensor_views(state, "", &mut views)?,
            WeightsAt::StateDict(entries) => {
                for (key, value) in entries.iter() {
                    if let (Some(name), Some(args)) = (as_str(key), rebuild_tensor_args(value)) {
                        push_view(&mut views, name.to_owned(), args)?;
                    }
                }
            }
        }
        Ok(views)
    }
}

/// Where the weights are: the file itself when it is a model or a state_dict, else, as
/// ultralytics chooses, `ema` when it is set, then `model`, then a `state_dict` entry.
fn select_weights(root: &Object) -> Option<(WeightsAt<'_>, WeightsSource)> {
    if let Some(weights) = WeightsAt::find(root) {
        return Some((weights, WeightsSource::Model));
    }
    let entries = as_dict(root)?;
    [
        ("ema", WeightsSource::Ema),
        ("model", WeightsSource::Model),
        ("state_dict", WeightsSource::Model),
    ]
    .into_iter()
    .find_map(|(key, source)| Some((WeightsAt::find(dict_get(entries, key)?)?, source)))
}

/// Adds the tensors of the module with `__dict__` `state`, and of its submodules, with
/// their state_dict names, as torch's `Module.state_dict()` does.
fn module_tensor_views(
    state: &[(Object, Object)],
    prefix: &str,
    views: &mut Vec<(String, TensorView)>,
) -> Result<(), Malformation> {
    let non_persistent = non_persistent_buffers(state);
    for kind in ["_parameters", "_buffers"] {
        for (key, value) in dict_get(state, kind).and_then(as_dict).unwrap_or_default() {
            let name = as_str(key).ok_or_else(|| Malformation::Key {
                module: prefix.to_owned(),
                dict: kind,
            })?;
            // None is an absent parameter, such as the bias of Conv2d(bias=False).
            if matches!(value, Object::None) || non_persistent.contains(&name) {
                continue;
            }
            let args = rebuild_tensor_args(value)
                .ok_or_else(|| Malformation::NotTensor(format!("{prefix}{name}")))?;
            push_view(views, format!("{prefix}{name}"), args)?;
        }
    }
    for (key, child) in dict_get(state, "_modules")
        .and_then(as_dict)
        .unwrap_or_default()
    {
        let name = as_str(key).ok_or_else(|| Malformation::Key {
            module: prefix.to_owned(),
            dict: "_modules",
        })?;
        // A module pickled a second time (yolov5's Convs all share the activation instance
        // Conv.default_act) is a memo reference, and candle's memo holds the object as it
        // was before BUILD gave it its state. Such a module is skipped: torch would list its
        // tensors once more under this name, but shared activations have none.
        if let Some(child_state) = module_state(child) {
            module_tensor_views(child_state, &format!("{prefix}{name}."), views)?;
        }
    }
    Ok(())
}

/// Buffers registered with `persistent=False`, which the state_dict leaves out.
fn non_persistent_buffers(state: &[(Object, Object)]) -> Vec<&str> {
    // Pickled as set([names]): a REDUCE of builtins.set on a one-list tuple.
    let names = match dict_get(state, "_non_persistent_buffers_set") {
        Some(Object::Reduce { args, .. }) => match args.as_ref() {
            Object::Tuple(args) => args.first(),
            _ => None,
        },
        _ => None,
    };
    match names {
        Some(Object::List(names)) => names.iter().filter_map(as_str).collect(),
        _ => Vec::new(),
    }
}

fn push_view(
    views: &mut Vec<(String, TensorView)>,
    name: String,
    rebuild_args: &[Object],
) -> Result<(), Malformation> {
    // BatchNorm's step counter: inference never reads it.
    if name.rsplit('.').next() == Some("num_batches_tracked") {
        return Ok(());
    }
    match TensorView::from_rebuild_args(rebuild_args) {
        Ok(view) => views.push((name, view)),
        Err(source) => return Err(Malformation::View { name, source }),
    }
    Ok(())
}

/// The arguments of `torch._utils._rebuild_tensor_v2`, if `obj` is a pickled tensor or
/// `nn.Parameter`.
fn rebuild_tensor_args(obj: &Object) -> Option<&[Object]> {
    let Object::Reduce { callable, args } = obj else {
        return None;
    };
    let (
        Object::Class {
            module_name,
            class_name,
        },
        Object::Tuple(args),
    ) = (callable.as_ref(), args.as_ref())
    else {
        return None;
    };
    match (module_name.as_str(), class_name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") => Some(args),
        // _rebuild_parameter(data, requires_grad, backward_hooks[, state]) wraps the tensor.
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            rebuild_tensor_args(args.first()?)
        }
        _ => None,
    }
}

/// A pickled tensor: a strided view (in elements) into a storage, the archive entry
/// `data/<storage_key>` whose element type `storage_class` names (`HalfStorage`, ...).
struct TensorView {
    storage_key: String,
    storage_class: String,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

impl TensorView {
    /// From `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, ...)`,
    /// where storage is the persistent id ('storage', <type>Storage, key, device, numel).
    /// candle's `Object::into_tensor_info` decodes the same, but panics on short tuples.
    fn from_rebuild_args(args: &[Object]) -> Result<Self, ViewError> {
        let [Object::PersistentLoad(storage), offset, size, stride, ..] = args else {
            return Err(ViewError::Arguments);
        };
        let Object::Tuple(storage) = storage.as_ref() else {
            return Err(ViewError::StorageId);
        };
        let [_, Object::Class { class_name, .. }, Object::Unicode(storage_key), ..] =
            storage.as_slice()
        else {
            return Err(ViewError::StorageId);
        };
        let (shape, strides) = (as_usizes(size), as_usizes(stride));
        let (Some(offset), Some(shape), Some(strides)) = (as_usize(offset), shape, strides) else {
            return Err(ViewError::NotIndices);
        };
        if shape.len() != strides.len() {
            return Err(ViewError::Rank { shape, strides });
        }
        Ok(TensorView {
            storage_key: storage_key.clone(),
            storage_class: class_name.clone(),
            offset,
            shape,
            strides,
        })
    }

    /// The view's elements, in row-major order, as bytes of `elem_size` each, after
    /// checking that the view stays inside `storage`.
    fn gather(&self, storage: &[u8], elem_size: usize) -> Result<Vec<u8>, ViewError> {
        let numel = self
            .shape
            .iter()
            .try_fold(1usize, |n, &dim| n.checked_mul(dim))
            .ok_or(ViewError::SizeOverflow)?;
        if numel == 0 {
            return Ok(Vec::new());
        }
        let last = self.last_element().ok_or(ViewError::ViewOverflow)?;
        let len = storage.len() / elem_size;
        if last >= len {
            return Err(ViewError::OutsideStorage { last, len });
        }
        if self.strides == contiguous_strides(&self.shape) {
            return Ok(
                storage[self.offset * elem_size..(self.offset + numel) * elem_size].to_vec(),
            );
        }
        // numel may far exceed the storage (stride 0 repeats elements), so no blind alloc.
        let mut bytes = Vec::new();
        let byte_len = numel
            .checked_mul(elem_size)
            .ok_or(ViewError::SizeOverflow)?;
        bytes
            .try_reserve_exact(byte_len)
            .map_err(|source| ViewError::Memory {
                bytes: byte_len,
                source,
            })?;
        let mut index = vec![0; self.shape.len()];
        for _ in 0..numel {
            let at = self.offset
                + index
                    .iter()
                    .zip(&self.strides)
                    .map(|(i, stride)| i * stride)
                    .sum::<usize>();
            bytes.extend_from_slice(&storage[at * elem_size..(at + 1) * elem_size]);
            next_index(&mut index, &self.shape);
        }
        Ok(bytes)
    }

    /// The storage index of the view's last element (None on overflow).
    fn last_element(&self) -> Option<usize> {
        self.shape
            .iter()
            .zip(&self.strides)
            .try_fold(self.offset, |at, (&dim, &stride)| {
                at.checked_add((dim - 1).checked_mul(stride)?)
            })
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// Steps a row-major multi-index through `shape`, the last dimension fastest.
fn next_index(index: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        index[d] += 1;
        if index[d] < shape[d] {
            return;
        }
        index[d] = 0;
    }
}

/// candle's dtype for a torch storage class.
fn storage_dtype(storage_class: &str) -> Option<DType> {
    Some(match storage_class {
        "HalfStorage" => DType::F16,
        "FloatStorage" => DType::F32,
        "BFloat16Storage" => DType::BF16,
        "DoubleStorage" => DType::F64,
        "ByteStorage" => DType::U8,
        "ShortStorage" => DType::I16,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        _ => return None,
    })
}

/// The model's `yaml` attribute: the config dict yolov5's DetectionModel (yolov7's Model)
/// was built from.
fn model_yaml(path: &Path, state: &[(Object, Object)]) -> Result<Value, PtError> {
    match dict_get(state, "yaml") {
        Some(yaml @ Object::Dict(_)) => to_yaml(yaml).map_err(|source| PtError::Malformed {
            path: path.to_owned(),
            source,
        }),
        _ => Err(PtError::NoYaml {
            path: path.to_owned(),
        }),
    }
}

/// Plain Python data (what yaml.safe_load makes) as a YAML value.
fn to_yaml(obj: &Object) -> Result<Value, Malformation> {
    Ok(match obj {
        Object::None => Value::Null,
        Object::Bool(b) => Value::Bool(*b),
        Object::Int(i) => Value::Number((*i).into()),
        Object::Long(i) => Value::Number((*i).into()),
        Object::Float(f) => Value::Number((*f).into()),
        Object::Unicode(s) => Value::String(s.clone()),
        Object::List(items) | Object::Tuple(items) => {
            Value::Sequence(items.iter().map(to_yaml).collect::<Result<_, _>>()?)
        }
        Object::Dict(entries) => Value::Mapping(
            in_insertion_order(entries)
                .map(|(k, v)| Ok((to_yaml(k)?, to_yaml(v)?)))
                .collect::<Result<_, Malformation>>()?,
        ),
        other => return Err(Malformation::Yaml(describe(other))),
    })
}

/// A pickled dict's entries in the order they were inserted. pickle writes dicts in
/// SETITEMS batches of 1000 (pickle.py's _BATCHSIZE; a last batch of one as SETITEM), and
/// candle's `Stack` appends each batch reversed.
fn in_insertion_order(entries: &[(Object, Object)]) -> impl Iterator<Item = &(Object, Object)> {
    entries.chunks(1000).flat_map(|batch| batch.iter().rev())
}

fn yaml_nc(yaml: &Value) -> Option<usize> {
    yaml.get("nc")?.as_u64()?.try_into().ok()
}

/// Class names in index order, from `names` as a list or as an {index: name} dict.
fn class_names(state: &[(Object, Object)]) -> Result<Vec<String>, Malformation> {
    let not_names = || Malformation::Names;
    match dict_get(state, "names") {
        None | Some(Object::None) => Ok(Vec::new()),
        Some(Object::List(names) | Object::Tuple(names)) => names
            .iter()
            .map(|name| as_str(name).map(str::to_owned).ok_or_else(not_names))
            .collect(),
        Some(Object::Dict(entries)) => {
            let indexed: Option<Vec<(usize, String)>> = entries
                .iter()
                .map(|(index, name)| Some((as_usize(index)?, as_str(name)?.to_owned())))
                .collect();
            let mut indexed = indexed.ok_or_else(not_names)?;
            indexed.sort_by_key(|(index, _)| *index);
            if indexed
                .iter()
                .enumerate()
                .any(|(position, (index, _))| position != *index)
            {
                return Err(Malformation::NamesIndex);
            }
            Ok(indexed.into_iter().map(|(_, name)| name).collect())
        }
        Some(_) => Err(Malformation::Names),
    }
}

/// The `__dict__` of a pickled `nn.Module`: a BUILD whose state has `_modules`.
fn module_state(obj: &Object) -> Option<&[(Object, Object)]> {
    let Object::Build { args, .. } = obj else {
        return None;
    };
    as_dict(args).filter(|state| dict_get(state, "_modules").is_some())
}

/// A dict's entries (candle unpickles OrderedDicts as dicts too).
fn as_dict(obj: &Object) -> Option<&[(Object, Object)]> {
    match obj {
        Object::Dict(entries) => Some(entries),
        _ => None,
    }
}

fn dict_get<'a>(entries: &'a [(Object, Object)], key: &str) -> Option<&'a Object> {
    entries
        .iter()
        .find(|(k, _)| as_str(k) == Some(key))
        .map(|(_, value)| value)
}

fn as_str(obj: &Object) -> Option<&str> {
    match obj {
        Object::Unicode(s) => Some(s),
        _ => None,
    }
}

fn as_i64(obj: &Object) -> Option<i64> {
    match obj {
        Object::Int(i) => Some(i64::from(*i)),
        Object::Long(i) => Some(*i),
        _ => None,
    }
}

fn as_usize(obj: &Object) -> Option<usize> {
    as_i64(obj)?.try_into().ok()
}

fn as_usizes(obj: &Object) -> Option<Vec<usize>> {
    match obj {
        Object::Tuple(items) | Object::List(items) => items.iter().map(as_usize).collect(),
        _ => None,
    }
}

/// For messages: a dict's keys, or the class of an object.
fn describe(obj: &Object) -> String {
    match obj {
        Object::Dict(entries) => {
            let keys: Vec<String> = entries.iter().map(|(key, _)| describe(key)).collect();
            format!("a dict with keys {}", keys.join(", "))
        }
        Object::Unicode(s) => format!("'{s}'"),
        Object::Class {
            module_name,
            class_name,
        } => format!("{module_name}.{class_name}"),
        Object::Reduce { callable, .. } | Object::Build { callable, .. } => match callable.as_ref()
        {
            Object::Class { .. } => format!("a {}", describe(callable)),
            // The BUILD of a REDUCE: the same object, given its state.
            made => describe(made),
        },
        Object::List(items) | Object::Tuple(items) => {
            format!("a sequence of {} items", items.len())
        }
        other => format!("{other:?}"),
    }
}
