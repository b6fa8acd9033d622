"""A synthetic shop, generated deterministically from a seed: products and customers.

:func:`build_shop` makes about 2,000 products in 12 categories (each with subcategories,
brands, prices, tags, stock, and a content payload for the web, the app and e-mail) and
5,000 customers (names, e-mail addresses and postal addresses for identify traits). Every
customer also has a hidden :class:`Taste` — favourite categories and brands, price
sensitivity, how readily they click, how often they visit — that segue never sees. The
traffic simulator lets customers browse, click and buy according to their taste, so a
ranker that learns from behaviour earns more clicks than one that does not.

The same seed always gives the same shop (``random.Random`` with an integer seed is
reproducible across runs and platforms).
"""

from __future__ import annotations

import random
import statistics
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CATEGORIES",
    "Customer",
    "Product",
    "Shop",
    "Taste",
    "appeal",
    "build_shop",
    "random_taste",
]

#: (category, share of the catalog, brands, ((subcategory, nouns, low price, high price), …))
CATEGORIES: Final[tuple[tuple[str, float, tuple[str, ...], tuple[Any, ...]], ...]] = (
    (
        "Shoes",
        1.3,
        ("Northwind", "Stridewell", "Kestrel", "Puma Ridge", "Lumo", "Oakfield"),
        (
            ("Running", ("Runner", "Trail Shoe", "Racer", "Tempo Shoe"), 60, 180),
            ("Sneakers", ("Sneaker", "Court Shoe", "Slip-On", "High-Top"), 45, 150),
            ("Boots", ("Chelsea Boot", "Hiking Boot", "Ankle Boot", "Work Boot"), 80, 260),
            ("Sandals", ("Sandal", "Slide", "Flip-Flop"), 20, 90),
        ),
    ),
    (
        "Apparel",
        1.6,
        ("Fernhill", "Marlowe", "Tidewater", "Ashby & Co", "Velo", "Oakfield"),
        (
            ("Tops", ("T-Shirt", "Polo", "Blouse", "Henley"), 15, 60),
            ("Knitwear", ("Sweater", "Cardigan", "Hoodie", "Turtleneck"), 35, 140),
            ("Jackets", ("Rain Jacket", "Parka", "Bomber", "Denim Jacket"), 70, 320),
            ("Trousers", ("Chinos", "Jeans", "Joggers", "Cargo Pants"), 30, 120),
            ("Dresses", ("Wrap Dress", "Midi Dress", "Shirt Dress"), 40, 180),
        ),
    ),
    (
        "Bags",
        0.7,
        ("Carryall", "Marlowe", "Roamer", "Kestrel", "Linden"),
        (
            ("Backpacks", ("Backpack", "Daypack", "Rolltop Pack"), 40, 180),
            ("Handbags", ("Tote", "Shoulder Bag", "Crossbody Bag", "Clutch"), 35, 300),
            ("Travel", ("Duffel", "Carry-On", "Weekender", "Packing Cube Set"), 25, 350),
        ),
    ),
    (
        "Jewelry & Watches",
        0.6,
        ("Aurelia", "Tempo", "Linden", "Silverline", "Mora"),
        (
            ("Watches", ("Field Watch", "Chronograph", "Dress Watch", "Smartwatch Band"), 60, 600),
            ("Necklaces", ("Pendant", "Chain", "Choker"), 25, 250),
            ("Rings", ("Band Ring", "Signet Ring", "Stacking Ring"), 20, 300),
            ("Earrings", ("Studs", "Hoops", "Drop Earrings"), 15, 180),
        ),
    ),
    (
        "Electronics",
        1.4,
        ("Voltra", "Nimbus", "Quanta", "Sonari", "Pixelon", "Arcbeam"),
        (
            ("Audio", ("Headphones", "Earbuds", "Bluetooth Speaker", "Soundbar"), 30, 400),
            ("Phones & Tablets", ("Tablet", "Phone Case", "Charger", "Power Bank"), 15, 900),
            ("Computers", ("Laptop Stand", "Keyboard", "Mouse", "Monitor", "USB-C Hub"), 20, 700),
            ("Cameras", ("Action Camera", "Tripod", "Camera Bag", "Lens Kit"), 25, 650),
            ("Smart Home", ("Smart Plug", "Smart Bulb", "Thermostat", "Doorbell Cam"), 15, 250),
        ),
    ),
    (
        "Home & Kitchen",
        1.5,
        ("Hearthly", "Copperpot", "Nordby", "Linden", "Casa Viva", "Stoneware Co"),
        (
            ("Cookware", ("Skillet", "Dutch Oven", "Saucepan Set", "Wok"), 25, 280),
            ("Tableware", ("Dinner Set", "Mug Set", "Glass Set", "Serving Bowl"), 15, 160),
            (
                "Appliances",
                ("Kettle", "Toaster", "Blender", "Coffee Grinder", "Air Fryer"),
                30,
                350,
            ),
            ("Bedding", ("Duvet Cover", "Pillow", "Throw Blanket", "Sheet Set"), 20, 200),
            ("Decor", ("Vase", "Candle", "Picture Frame", "Table Lamp", "Rug"), 10, 240),
        ),
    ),
    (
        "Beauty",
        1.0,
        ("Glowe", "Pura", "Maison Rose", "Botanica", "Velour"),
        (
            ("Skincare", ("Moisturiser", "Serum", "Cleanser", "Face Mask", "Sunscreen"), 8, 90),
            ("Makeup", ("Lipstick", "Mascara", "Foundation", "Eye Palette"), 8, 60),
            ("Hair", ("Shampoo", "Conditioner", "Hair Oil", "Hair Dryer"), 6, 180),
            ("Fragrance", ("Eau de Parfum", "Eau de Toilette", "Body Mist"), 20, 150),
        ),
    ),
    (
        "Sports & Outdoors",
        1.1,
        ("Summit", "Kestrel", "Velo", "Trailhead", "Aqualine"),
        (
            ("Fitness", ("Yoga Mat", "Dumbbell Set", "Resistance Bands", "Kettlebell"), 15, 250),
            ("Cycling", ("Bike Helmet", "Bike Light", "Cycling Jersey", "Bottle Cage"), 10, 220),
            ("Camping", ("Tent", "Sleeping Bag", "Camp Stove", "Headlamp"), 15, 450),
            ("Swimming", ("Goggles", "Swimsuit", "Swim Cap", "Towel Poncho"), 8, 90),
        ),
    ),
    (
        "Toys & Games",
        0.8,
        ("Playwell", "Brickhaus", "Meeple & Co", "Tiny Tinker"),
        (
            ("Board Games", ("Strategy Game", "Party Game", "Family Game", "Card Game"), 12, 80),
            ("Building", ("Building Set", "Marble Run", "Robot Kit"), 15, 180),
            ("Plush", ("Teddy Bear", "Plush Fox", "Plush Whale"), 10, 50),
            ("Puzzles", ("1000-Piece Puzzle", "3D Puzzle", "Brain Teaser"), 8, 45),
        ),
    ),
    (
        "Books",
        0.9,
        ("Harbor Press", "Quill House", "Lantern Books", "Meridian"),
        (
            ("Fiction", ("Novel", "Thriller", "Short Stories", "Fantasy Saga"), 8, 30),
            ("Cookbooks", ("Cookbook", "Baking Book", "Vegan Cookbook"), 15, 45),
            ("Travel Guides", ("City Guide", "Hiking Guide", "Road Trip Atlas"), 10, 35),
            ("Children", ("Picture Book", "Bedtime Stories", "Activity Book"), 6, 25),
        ),
    ),
    (
        "Garden",
        0.6,
        ("Greenthumb", "Hearthly", "Bloom & Root", "Terraform"),
        (
            ("Tools", ("Pruning Shears", "Trowel", "Garden Fork", "Hose Reel"), 10, 120),
            ("Planters", ("Planter", "Raised Bed", "Hanging Basket"), 12, 200),
            ("Outdoor Living", ("Garden Chair", "Parasol", "Fire Pit", "String Lights"), 20, 400),
        ),
    ),
    (
        "Pet Supplies",
        0.5,
        ("Pawsome", "Tailwind", "Barkley", "Whiskerly"),
        (
            ("Dogs", ("Dog Bed", "Leash", "Chew Toy", "Dog Coat"), 8, 140),
            ("Cats", ("Scratching Post", "Cat Tree", "Cat Toy", "Litter Box"), 6, 180),
            ("Food & Treats", ("Dog Treats", "Cat Food", "Dental Chews"), 4, 60),
        ),
    ),
)

_ADJECTIVES: Final = (
    "Classic", "Urban", "Pro", "Lite", "Eco", "Essential", "Premium", "Everyday", "Vintage",
    "Sport", "Smart", "Compact", "Deluxe", "Signature", "Nordic", "Active", "Studio", "Coastal",
)  # fmt: skip
_COLORS: Final = (
    "black", "white", "navy", "red", "forest green", "grey", "sand", "sky blue", "blush",
    "mustard", "olive", "charcoal",
)  # fmt: skip
_MATERIALS: Final = (
    "recycled polyester", "organic cotton", "leather", "mesh", "stainless steel", "oak",
    "bamboo", "wool", "ceramic", "glass", "aluminium", "linen",
)  # fmt: skip
_PERKS: Final = (
    "Built to last and easy to care for.",
    "A customer favourite for everyday use.",
    "Light, practical and made to be used every day.",
    "Designed in small batches with a two-year guarantee.",
    "Made with responsibly sourced materials.",
    "Free returns within 30 days.",
)
_FIRST_NAMES: Final = (
    "Ada", "Ben", "Chloé", "Dmitri", "Elif", "Finn", "Grace", "Hugo", "Ines", "Jonas", "Kaito",
    "Lena", "Mateo", "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tara", "Umar",
    "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Carla", "Diego", "Emma",
    "Felix", "Greta", "Hana", "Ivan", "Julia", "Karim", "Lucía", "Marek", "Nina", "Oskar",
    "Paula", "Rafael", "Sofia", "Theo", "Ulla", "Viktor", "Wanda", "Yara", "Zeynep",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Müller", "Smith", "García", "Rossi", "Dubois", "Jansen", "Kowalski", "Nielsen", "Silva",
    "Novak", "Schmidt", "Johnson", "López", "Bianchi", "Martin", "de Vries", "Nowak",
    "Larsen", "Santos", "Horvat", "Weber", "Brown", "Fernández", "Romano", "Bernard",
    "Bakker", "Wiśniewski", "Andersen", "Costa", "Kovač", "Fischer", "Taylor", "Ruiz",
    "Greco", "Petit", "Visser", "Lewandowski", "Berg", "Pereira", "Marić",
)  # fmt: skip
_STREETS: Final = (
    "Main Street", "Station Road", "Lindenstraße", "Rue de la Paix", "Kerkstraat",
    "Calle Mayor", "Via Roma", "Storgatan", "Ulica Długa", "Hauptstraße", "High Street",
    "Oak Avenue", "Canal Street", "Mill Lane", "Park Road",
)  # fmt: skip
#: country → (cities, states or None, postal code digits, share of customers)
_COUNTRIES: Final = {
    "DE": (("Berlin", "Hamburg", "München", "Köln", "Leipzig"), None, 5, 0.24),
    "FR": (("Paris", "Lyon", "Marseille", "Lille", "Nantes"), None, 5, 0.14),
    "GB": (("London", "Manchester", "Bristol", "Leeds", "Glasgow"), None, 0, 0.12),
    "US": (("New York", "Austin", "Seattle", "Chicago", "Denver"), ("NY", "TX", "WA", "IL", "CO"),
           5, 0.18),
    "NL": (("Amsterdam", "Rotterdam", "Utrecht", "Eindhoven"), None, 4, 0.08),
    "ES": (("Madrid", "Barcelona", "Valencia", "Sevilla"), None, 5, 0.08),
    "IT": (("Roma", "Milano", "Torino", "Bologna"), None, 5, 0.07),
    "SE": (("Stockholm", "Göteborg", "Malmö"), None, 5, 0.04),
    "PL": (("Warszawa", "Kraków", "Gdańsk"), None, 5, 0.05),
}  # fmt: skip
_ASCII: Final = str.maketrans(
    {"ü": "u", "é": "e", "í": "i", "ć": "c", "ń": "n", "ś": "s", "ł": "l", "ó": "o", "č": "c",
     "ä": "a", "ö": "o", "ß": "ss", " ": "", "'": ""}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Product:
    """One catalog product, with a hidden ``quality`` (how well it sells to anyone)."""

    item_id: str
    title: str
    category: str
    subcategory: str
    brand: str
    price: float
    tags: tuple[str, ...]
    color: str
    material: str
    rating: float
    stock: int
    available: bool
    quality: float
    content: dict[str, dict[str, str]]

    def payload(self) -> dict[str, Any]:
        """The item as ``POST /v1/catalog/items`` takes it (the hidden quality left out)."""
        return {
            "item_id": self.item_id,
            "type": "product",
            "title": self.title,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
            "tags": list(self.tags),
            "attributes": {
                "subcategory": self.subcategory,
                "color": self.color,
                "material": self.material,
                "rating": self.rating,
            },
            "available": self.available,
            "stock": self.stock,
            "content": self.content,
        }

    @property
    def in_stock(self) -> bool:
        return self.available and self.stock > 0


@dataclass(frozen=True, slots=True)
class Taste:
    """What a visitor likes, hidden from segue; it drives what they view, click and buy.

    Attributes:
        categories: favourite category → strength, 1.0 for the strongest.
        brands: favourite brands.
        price_sensitivity: 0 (price does not matter) to 1 (avoids anything pricier than usual).
        click_propensity: multiplies every click probability (some people click more).
        visit_weight: how often this person comes back, relative to others.
    """

    categories: dict[str, float]
    brands: frozenset[str]
    price_sensitivity: float
    click_propensity: float
    visit_weight: float


@dataclass(frozen=True, slots=True)
class Customer:
    """A known customer: identifiers, identify traits, and hidden behaviour.

    Attributes:
        anonymous_id: the id of the customer's device (browser cookie).
        anonymous_first: browses anonymously until logging in during a session, when the
            device is stitched to the customer (otherwise always logged in).
        refuses_personalization: sends ``personalization: false`` with every request.
        control: in the demo's client-side holdout: pages ask decide without identifiers.
    """

    user_id: str
    anonymous_id: str
    traits: dict[str, Any]
    country: str
    taste: Taste
    anonymous_first: bool
    refuses_personalization: bool
    control: bool


@dataclass(slots=True)
class Shop:
    """The generated shop with lookups the simulator needs."""

    seed: int
    products: list[Product]
    customers: list[Customer]
    by_category: dict[str, list[Product]] = field(default_factory=dict)
    median_price: dict[str, float] = field(default_factory=dict)
    brands: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        prices: dict[str, list[float]] = {}
        for product in self.products:
            self.by_category.setdefault(product.category, []).append(product)
            prices.setdefault(product.subcategory, []).append(product.price)
        self.median_price = {sub: statistics.median(p) for sub, p in prices.items()}
        self.brands = {name: brands for name, _, brands, _ in CATEGORIES}

    @property
    def categories(self) -> list[str]:
        return [name for name, *_ in CATEGORIES]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


def _counts(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` by ``weights`` into whole numbers that add up exactly."""
    raw = [total * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _products(rng: random.Random, total: int) -> list[Product]:
    products: list[Product] = []
    shares = _counts(total, [share for _, share, _, _ in CATEGORIES])
    number = 10000
    for (category, _, brands, subcategories), count in zip(CATEGORIES, shares, strict=True):
        for n in range(count):
            sub, nouns, low, high = subcategories[n % len(subcategories)]
            number += 1
            item_id = f"SKU-{number}"
            brand = rng.choice(brands)
            adjective, noun = rng.choice(_ADJECTIVES), rng.choice(nouns)
            color, material = rng.choice(_COLORS), rng.choice(_MATERIALS)
            title = f"{brand} {adjective} {noun}"
            # log-uniform prices, ending in .99 or .49 like a real shop
            price = low * (high / low) ** rng.random()
            price = round(max(int(price), 1) + rng.choice((0.99, 0.49, 0.0)), 2)
            quality = rng.betavariate(2.0, 3.0)
            rating = round(min(5.0, 2.8 + 2.2 * quality + rng.uniform(-0.3, 0.3)), 1)
            tags = [_slug(sub), _slug(noun), color.replace(" ", "-")]
            if rng.random() < 0.12:
                tags.append("sale")
            if rng.random() < 0.08:
                tags.append("new")
            if material in ("recycled polyester", "organic cotton", "bamboo", "linen"):
                tags.append("sustainable")
            roll = rng.random()
            stock = 0 if roll < 0.02 else rng.randint(1, 250)
            available = rng.random() >= 0.01
            description = (
                f"The {title} in {color}, made of {material}. {rng.choice(_PERKS)} "
                f"Rated {rating} out of 5."
            )
            path = f"/p/{item_id.lower()}/{_slug(title)}"
            image = f"/img/{_slug(category)}/{_slug(sub)}/{item_id.lower()}.jpg"
            content = {
                "web": {"title": title, "image_url": image, "description": description,
                        "url": path},
                "app": {"title": title, "image_url": image.replace(".jpg", "@2x.jpg"),
                        "description": description[:120], "url": f"shop:/{path}"},
                "email": {"title": f"{title}: picked for you",
                          "image_url": image.replace(".jpg", "-600.jpg"),
                          "description": f"{description} {price:.2f} EUR.",
                          "url": f"{path}?utm_source=email&utm_medium=recommendation"},
            }  # fmt: skip
            products.append(
                Product(
                    item_id=item_id,
                    title=title,
                    category=category,
                    subcategory=sub,
                    brand=brand,
                    price=price,
                    tags=tuple(dict.fromkeys(tags)),
                    color=color,
                    material=material,
                    rating=rating,
                    stock=stock,
                    available=available,
                    quality=quality,
                    content=content,
                )
            )
    return products


def random_taste(rng: random.Random) -> Taste:
    """A visitor's hidden taste: one to three favourite categories, a few brands in them."""
    names = [name for name, *_ in CATEGORIES]
    weights = [share for _, share, _, _ in CATEGORIES]
    favourites: list[str] = []
    while len(favourites) < rng.choice((1, 2, 2, 3)):
        pick = rng.choices(names, weights)[0]
        if pick not in favourites:
            favourites.append(pick)
    strengths = sorted((rng.uniform(0.3, 1.0) for _ in favourites), reverse=True)
    pairs = zip(favourites, strengths, strict=True)
    categories = {name: round(strength / strengths[0], 3) for name, strength in pairs}
    brand_pool = sorted(
        {brand for name, _, brands, _ in CATEGORIES if name in favourites for brand in brands}
    )
    brands = frozenset(rng.sample(brand_pool, min(len(brand_pool), rng.randint(1, 3))))
    return Taste(
        categories=categories,
        brands=brands,
        price_sensitivity=round(rng.betavariate(2.0, 2.0), 3),
        click_propensity=round(rng.uniform(0.6, 1.4), 3),
        visit_weight=round(rng.paretovariate(1.5), 3),  # a few regulars, many occasional
    )


def _customers(rng: random.Random, total: int) -> list[Customer]:
    customers: list[Customer] = []
    countries = list(_COUNTRIES)
    shares = [spec[3] for spec in _COUNTRIES.values()]
    used: set[str] = set()
    for n in range(total):
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        country = rng.choices(countries, shares)[0]
        cities, states, digits, _ = _COUNTRIES[country]
        city_index = rng.randrange(len(cities))
        if digits:
            postal = str(rng.randrange(10 ** (digits - 1), 10**digits))
        else:
            letters = "ABCDEFGHJKLMNPRSTUWXYZ"
            postal = f"{rng.choice(letters)}{rng.randint(1, 20)} {rng.randint(1, 9)}"
            postal += f"{rng.choice(letters)}{rng.choice(letters)}"
        handle = f"{first}.{last}".lower().translate(_ASCII)
        email = f"{handle}@example.com"
        while email in used:
            email = f"{handle}{rng.randint(2, 9999)}@example.com"
        used.add(email)
        address: dict[str, str] = {
            "street": f"{rng.choice(_STREETS)} {rng.randint(1, 180)}",
            "city": cities[city_index],
            "postalCode": postal,
            "country": country,
        }
        if states is not None:
            address["state"] = states[city_index]
        traits: dict[str, Any] = {
            "email": email,
            "firstName": first,
            "lastName": last,
            "address": address,
            "createdAt": f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}T10:00:00Z",
        }
        customers.append(
            Customer(
                user_id=f"cust-{n + 1:05d}",
                anonymous_id=_uuid(rng),
                traits=traits,
                country=country,
                taste=random_taste(rng),
                anonymous_first=rng.random() < 0.25,
                refuses_personalization=rng.random() < 0.03,
                control=rng.random() < 0.10,
            )
        )
    return customers


def build_shop(seed: int = 1, products: int = 2000, customers: int = 5000) -> Shop:
    """The demo shop for ``seed``: the same seed always gives the same shop."""
    rng = random.Random(seed)
    return Shop(seed=seed, products=_products(rng, products), customers=_customers(rng, customers))


def appeal(taste: Taste, product: Product, median_price: float | None = None) -> float:
    """How much a person with ``taste`` wants ``product``, from 0.01 to 1 (hidden truth).

    The favourite categories dominate, a favourite brand adds to it, a price above the usual
    price of its kind puts price-sensitive people off, and well-made products appeal to
    everyone a little more.
    """
    score = 0.04 + 0.66 * taste.categories.get(product.category, 0.0)
    if product.brand in taste.brands:
        score += 0.2
    if median_price:
        ratio = product.price / median_price
        score -= 0.35 * taste.price_sensitivity * max(0.0, ratio - 1.0)
    score *= 0.6 + 0.8 * product.quality
    return max(0.01, min(1.0, score))
