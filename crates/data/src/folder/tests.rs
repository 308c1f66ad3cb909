use std::fs;
use std::path::Path;

use super::*;
use crate::scratch_dir;
use crate::synthetic::synthetic_images;

fn gray(path: &Path, w: u32, h: u32, value: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(w, h, image::Luma([value])).save(path).unwrap();
}

fn rgb(path: &Path, w: u32, h: u32, value: [u8; 3]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(value)).save(path).unwrap();
}

/// train/{ant: 2 gray PNGs, bee: an RGB PNG and an RGB JPEG, cow: a gray JPEG}, test/{ant, cow}.
fn clean_folder(tag: &str) -> PathBuf {
    let dir = scratch_dir(tag);
    gray(&dir.join("train/ant/1.png"), 6, 4, 10);
    gray(&dir.join("train/ant/2.png"), 6, 4, 20);
    rgb(&dir.join("train/bee/1.png"), 6, 4, [200, 100, 0]);
    rgb(&dir.join("train/bee/2.JPG"), 6, 4, [0, 0, 250]);
    gray(&dir.join("train/cow/x.jpeg"), 6, 4, 128);
    fs::write(dir.join("train/cow/notes.txt"), "not an image").unwrap();
    gray(&dir.join("test/ant/1.png"), 6, 4, 30);
    rgb(&dir.join("test/cow/1.png"), 6, 4, [90, 90, 90]);
    dir
}

fn message(result: Result<FolderData>) -> String {
    let msg = result.unwrap_err().to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn mixed_formats_and_colours_load_with_class_names() {
    let dir = clean_folder("folder-clean");
    let data = load_folder(&dir, &FolderOptions::default()).unwrap();
    assert_eq!(data.class_names, ["ant", "bee", "cow"]);
    assert!(data.valid.is_none() && data.warnings.is_empty());
    let train = &data.train;
    assert_eq!((train.len(), train.channels, train.height, train.width, train.classes), (5, 3, 4, 6, 3));
    assert_eq!(train.labels, [0, 0, 1, 1, 2]);
    // A grayscale file in a colour set has its value in every channel.
    assert!(train.image(1).iter().all(|&p| p == 20));
    let bee = train.image(2);
    assert_eq!((bee[0], bee[24], bee[48]), (200, 100, 0), "planes are red, green, blue");
    let jpeg = train.image(3);
    assert!(jpeg[0] < 20 && jpeg[48] > 230, "JPEG is lossy but keeps its colour: {:?}", (jpeg[0], jpeg[48]));
    assert_eq!(data.test.labels, [0, 2], "test labels index the training classes");

    let gray_only = FolderOptions { channels: Some(1), ..FolderOptions::default() };
    let data = load_folder(&dir, &gray_only).unwrap();
    assert_eq!((data.train.channels, data.train.image(0).len()), (1, 24));
    assert!(data.test.image(1).iter().all(|&p| p == 90));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn sizes_must_agree_unless_a_size_is_set() {
    let dir = clean_folder("folder-sizes");
    gray(&dir.join("train/cow/big.png"), 12, 10, 77);
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("big.png") && msg.contains("12x10") && msg.contains("data.size"), "{msg}");
    let sized = FolderOptions { size: Some([5, 5]), channels: Some(1), ..FolderOptions::default() };
    let data = load_folder(&dir, &sized).unwrap();
    assert_eq!((data.train.height, data.train.width, data.train.len()), (5, 5, 6));
    assert_eq!(data.train.labels[4], 2, "cow/big.png sorts before cow/x.jpeg");
    assert!(data.train.image(4).iter().all(|&p| p == 77), "a uniform image stays uniform when resized");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn corrupt_images_are_refused_or_skipped() {
    let dir = clean_folder("folder-corrupt");
    let good = fs::read(dir.join("train/ant/1.png")).unwrap();
    fs::write(dir.join("train/ant/3.png"), &good[..good.len() / 2]).unwrap();
    fs::write(dir.join("test/cow/2.jpg"), b"this is not a JPEG").unwrap();
    // Headers are all read before any image is decoded: the bad header is met first.
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("2.jpg") && msg.contains("data.skip_bad_images = true"), "{msg}");
    let bad_jpeg = fs::read(dir.join("test/cow/2.jpg")).unwrap();
    fs::remove_file(dir.join("test/cow/2.jpg")).unwrap();
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("3.png") && msg.contains("data.skip_bad_images = true"), "{msg}");
    fs::write(dir.join("test/cow/2.jpg"), bad_jpeg).unwrap();
    let skip = FolderOptions { skip_bad_images: true, ..FolderOptions::default() };
    let data = load_folder(&dir, &skip).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (5, 2));
    assert_eq!(data.warnings.len(), 2, "{:?}", data.warnings);
    assert!(data.warnings[0].contains("3.png") || data.warnings[1].contains("3.png"), "{:?}", data.warnings);
    assert!(data.warnings.iter().any(|w| w.contains("2.jpg")), "{:?}", data.warnings);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn layout_faults_name_the_folder_and_the_fix() {
    let dir = clean_folder("folder-layout");
    fs::create_dir_all(dir.join("train/dog")).unwrap();
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("train/dog") && msg.contains("no .png"), "{msg}");
    fs::remove_dir(dir.join("train/dog")).unwrap();

    gray(&dir.join("test/elk/1.png"), 6, 4, 1);
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("test/elk") && msg.contains("\"elk\"") && msg.contains("ant, bee, cow"), "{msg}");
    fs::remove_dir_all(dir.join("test")).unwrap();
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("test") && msg.contains("data.dir"), "{msg}");
    let msg = message(load_folder(&dir.join("nowhere"), &FolderOptions::default()));
    assert!(msg.contains("nowhere") && msg.contains("train/<class>/"), "{msg}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn memory_check_refuses_before_decoding() {
    let dir = clean_folder("folder-memory");
    let small = FolderOptions { available_memory: Some(500), ..FolderOptions::default() };
    let msg = message(load_folder(&dir, &small));
    assert!(msg.contains("7 images of 3x4x6") && msg.contains("data.size"), "{msg}");
    let tiny = FolderOptions { available_memory: Some(50), ..FolderOptions::default() };
    let msg = message(load_folder(&dir, &tiny));
    assert!(msg.contains("the decoded image") && msg.contains(".png"), "{msg}");
    let _ = fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_refused_and_linked_folders_followed() {
    use std::os::unix::fs::symlink;
    let dir = clean_folder("folder-links");
    symlink(dir.join("train/bee"), dir.join("test/bee")).unwrap();
    let data = load_folder(&dir, &FolderOptions::default()).unwrap();
    assert_eq!(data.test.labels, [0, 1, 1, 2], "a linked class folder is read");
    symlink(dir.join("train/ant"), dir.join("train/ant/again")).unwrap();
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("again") && msg.contains("loop"), "{msg}");
    fs::remove_file(dir.join("train/ant/again")).unwrap();
    symlink(dir.join("train/ant/self"), dir.join("train/ant/self")).unwrap();
    let msg = message(load_folder(&dir, &FolderOptions::default()));
    assert!(msg.contains("self") && msg.contains("symbolic link"), "{msg}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn written_folders_read_back_exactly_with_a_valid_split() {
    let dir = scratch_dir("folder-write");
    let set = synthetic_images(12, 3, 3, 5, 4, 7);
    let names: Vec<String> = ["zero", "one", "two"].map(String::from).into();
    write_image_folder(&set, &names, &dir.join("train")).unwrap();
    write_image_folder(&set.take(3), &names, &dir.join("valid")).unwrap();
    write_image_folder(&set.take(6), &names, &dir.join("test")).unwrap();
    let data = load_folder(&dir, &FolderOptions::default()).unwrap();
    assert_eq!(data.class_names, ["one", "two", "zero"], "classes are sorted by name");
    assert_eq!(data.valid.as_ref().map(ImageSet::len), Some(3));
    // Sorted by class: the folder's order is class by class, each in file order.
    let mut order: Vec<usize> = (0..12).collect();
    order.sort_by_key(|&i| (["zero", "one", "two"][usize::from(set.labels[i])], i));
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(data.train.image(k), set.image(i), "image {i}");
        assert_eq!(data.class_names[usize::from(data.train.labels[k])], names[usize::from(set.labels[i])]);
    }
    let _ = fs::remove_dir_all(dir);
}
