//! The reference's own examples of co-routine pipelines, with exact results.

use std::cell::RefCell;

use paipa::iter::{boxed, chunk, combine, consume, consume_n, flatten, identity, BoxIter, Pipeline, Recipe, StepList};

fn remove_odd(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.filter(|x| x % 2 == 0)
}

#[test]
fn remove_odd_over_0_to_100_sums_to_2450() {
    let sum: u64 = Pipeline::new(0..100).step(remove_odd).into_iter().sum();
    assert_eq!(sum, 2450);
}

#[test]
fn chunk_3_over_1_to_8() {
    let out: Vec<Vec<u32>> = Pipeline::new(1..=8).step(chunk(3).unwrap()).into_iter().collect();
    assert_eq!(out, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8]]);
}

#[test]
fn chunk_of_exact_multiple_and_of_nothing() {
    let out: Vec<Vec<u32>> = Pipeline::new(1..=6).step(chunk(3).unwrap()).into_iter().collect();
    assert_eq!(out, vec![vec![1, 2, 3], vec![4, 5, 6]]);
    let empty: Vec<Vec<u32>> = Pipeline::new(0..0).step(chunk(3).unwrap()).into_iter().collect();
    assert!(empty.is_empty());
}

#[test]
fn chunk_zero_is_a_clear_error() {
    let err = chunk::<std::ops::Range<u32>>(0)
        .err()
        .expect("chunk(0) must be refused");
    assert_eq!(err.field(), "chunk size");
    assert_eq!(err.value(), "0");
    assert_eq!(err.to_string(), "invalid chunk size: 0 (must be at least 1)");
}

fn step(it: BoxIter<'_, u64>) -> impl Iterator<Item = u64> + '_ {
    it.map(|x| x * 3)
}

/// Drops every second item.
fn remover(it: BoxIter<'_, u64>) -> impl Iterator<Item = u64> + '_ {
    it.enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, x)| x)
}

#[test]
fn nested_step_lists_are_flattened_in_order() {
    let steps: StepList<'_, u64> = vec![
        StepList::from(boxed(step)),
        vec![boxed(remover), boxed(identity)].into(),
        boxed(step).into(),
    ]
    .into();
    assert_eq!(steps.names(), ["step", "remover", "identity", "step"]);
    let out: Vec<u64> = combine(0..1000, steps).into_iter().collect();
    assert_eq!(out.len(), 500);
    assert_eq!(out[..3], [0, 18, 36]);
    assert_eq!(*out.last().unwrap(), 998 * 9);
}

#[test]
fn deferred_pipeline_applies_to_many_sources() {
    let recipe = Recipe::new().step(remover).step_named("triple", step);
    let run = |n: u64| -> Vec<u64> { recipe.apply(0..n).into_iter().collect() };
    assert_eq!(run(4), vec![0, 6]);
    assert_eq!(run(7), vec![0, 6, 12, 18]);
    assert_eq!(consume(recipe.apply(0..1000)), 500);
}

#[test]
fn consume_and_consume_n() {
    assert_eq!(consume(Pipeline::new(0..1234).step(identity)), 1234);
    let mut it = Pipeline::new(0..10).into_iter();
    assert_eq!(consume_n(&mut it, 3), 3);
    assert_eq!(it.next(), Some(3));
    assert_eq!(consume_n(&mut it, 100), 6);
    assert_eq!(consume_n(&mut it, 1), 0);
}

#[test]
fn flatten_restores_chunked_items() {
    let out: Vec<u32> = Pipeline::new(0..10)
        .step(chunk(4).unwrap())
        .step(flatten)
        .into_iter()
        .collect();
    assert_eq!(out, (0..10).collect::<Vec<_>>());
}

#[test]
fn item_types_change_between_steps_and_itertools_adaptors_are_steps() {
    use itertools::Itertools;
    let out: Vec<String> = Pipeline::new(vec![3, 1, 2, 3, 1])
        .step(|it| it.unique())
        .step(|it| it.map(|x: i32| x.to_string()))
        .step(|it| Itertools::intersperse(it, "-".to_string()))
        .into_iter()
        .collect();
    assert_eq!(out.concat(), "3-1-2");
}

#[derive(Clone, Debug, PartialEq)]
struct Product {
    id: u32,
    name: String,
    price: u32,
    available: bool,
}

fn only_available(products: impl Iterator<Item = Product>) -> impl Iterator<Item = Product> {
    products.filter(|p| p.available)
}

#[test]
fn products_example_over_an_in_memory_table() {
    let table: Vec<Product> = (0..10_000)
        .map(|id| Product {
            id,
            name: format!("product {id}"),
            price: id * 7 % 1000,
            available: id % 3 != 0,
        })
        .collect();
    let available = table.iter().filter(|p| p.available).count();
    assert_eq!(available, 6666);

    // The "microservice": records every batch it receives.
    let server: RefCell<Vec<usize>> = RefCell::new(Vec::new());
    let pipeline = Pipeline::new(table.iter().cloned())
        .step(only_available)
        .step(chunk(2048).unwrap())
        .step_named("send_in_batch", |chunks| {
            chunks.inspect(|batch: &Vec<Product>| server.borrow_mut().push(batch.len()))
        })
        .step(flatten);
    let out: Vec<Product> = pipeline.into_iter().collect();
    assert_eq!(out.len(), 6666);
    assert!(out.iter().all(|p| p.available));
    assert_eq!(out[0].id, 1);
    assert_eq!(*server.borrow(), vec![2048, 2048, 2048, 522]);
}
