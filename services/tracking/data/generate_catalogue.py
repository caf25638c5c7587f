"""Writes catalogue.json next to this file: the seeded partner catalogue, in Russian. Deterministic
(a fixed seed), run once and the output committed; edit the named partners here and re-run to
change it.

    python services/tracking/data/generate_catalogue.py

The named partners come first: the shops of the program's source article with their real terms
(AliExpress: at most 2,000 roubles per purchase, nothing for a jump to Tmall, app orders count;
Ozon: nothing when the shop's own bonuses were used; Labirint: nothing under 50 roubles), then
well-known shops with plausible terms. The rest, up to 800, are generated Russian shop names.
Names are as people know them: Cyrillic, or Latin where the brand is Latin; `aliases` are the
other spellings people type («Алиэкспресс» for AliExpress), found by the search as well.

Tiers: `rate_bps` (percent in basis points, 100 = 1 %) or `fixed_kopecks`, from `min_amount_kopecks` up.
Partners with `service_code` are the operator's own services: a billing activation credits their
fixed amount (ReportServiceActivation). `terms_text` is left out: it is written from the rules
when the catalogue is loaded (services/tracking/catalogue.py).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("catalogue.json")
TARGET_PARTNERS = 800

CATEGORIES = [
    ("online-shops", "Интернет-магазины"),
    ("electronics", "Электроника и бытовая техника"),
    ("fashion", "Одежда и обувь"),
    ("home", "Дом и сад"),
    ("beauty", "Красота и здоровье"),
    ("kids", "Детские товары"),
    ("books", "Книги и хобби"),
    ("food", "Продукты и доставка еды"),
    ("travel", "Путешествия"),
    ("restaurant-booking", "Бронирование ресторанов"),
    ("leisure", "Досуг и развлечения"),
    ("education", "Образование"),
    ("operator-services", "Услуги оператора"),
]


def pct(bps: int, **more: object) -> dict[str, object]:
    return {"tiers": [{"min_amount_kopecks": 0, "rate_bps": bps}], "legal_entities_excluded": True, **more}


def fixed(kopecks: int, **more: object) -> dict[str, object]:
    return {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": kopecks}], **more}


def shop(slug: str, name: str, category: str, site_url: str, description: str, rules: dict[str, object],
         aliases: tuple[str, ...] = (), **more: object) -> dict[str, object]:
    return {"slug": slug, "name": name, "aliases": list(aliases), "category": category, "site_url": site_url,
            "description": description, "rules": rules, **more}


NAMED = [
    # The source article's partners, with the terms it gives.
    shop("aliexpress", "AliExpress", "online-shops", "https://aliexpress.ru/",
         "Товары из Китая и со всего мира.",
         pct(700, cap_kopecks=200000, app_orders_allowed=True, excluded_domains=["tmall.ru"]),
         ("Алиэкспресс", "Али Экспресс", "Али")),
    shop("ozon", "Ozon", "online-shops", "https://www.ozon.ru/",
         "Маркетплейс: от книг до бытовой техники. Заказ из нескольких направлений приносит кэшбэк "
         "за каждое направление отдельно.", pct(400, exclusive_loyalty=True), ("Озон",)),
    shop("labirint", "Лабиринт", "books", "https://www.labirint.ru/",
         "Книги, канцелярия и настольные игры.", pct(600, min_purchase_kopecks=5000), ("Labirint", "Labirint.ru")),
    shop("tmall", "Tmall", "online-shops", "https://tmall.ru/", "Официальные магазины брендов.", pct(300),
         ("Тмолл", "Тмалл")),
    # Well-known shops, with plausible terms.
    shop("eldorado", "Эльдорадо", "electronics", "https://www.eldorado.ru/", "Электроника и бытовая техника.",
         {"tiers": [{"min_amount_kopecks": 0, "rate_bps": 200}, {"min_amount_kopecks": 2000000, "rate_bps": 300},
                    {"min_amount_kopecks": 5000000, "rate_bps": 400}], "cap_kopecks": 500000}, ("Eldorado",)),
    shop("ostrovok", "Островок", "travel", "https://ostrovok.ru/", "Отели по всему миру.",
         {"tiers": [{"min_amount_kopecks": 0, "rate_bps": 300}, {"min_amount_kopecks": 3000000, "rate_bps": 500}],
          "app_orders_allowed": False}, ("Ostrovok", "Ostrovok.ru")),
    shop("tutu", "Туту.ру", "travel", "https://www.tutu.ru/", "Билеты на поезда и автобусы.", fixed(5000),
         ("Tutu.ru",)),
    shop("restoclub", "Restoclub", "restaurant-booking", "https://www.restoclub.ru/", "Бронирование столиков.",
         fixed(15000), ("Рестоклаб", "Рестоклуб")),
    shop("kassir", "Кассир.ру", "leisure", "https://www.kassir.ru/", "Билеты на концерты и в театры.",
         {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 10000},
                    {"min_amount_kopecks": 500000, "rate_bps": 300}]}, ("Kassir.ru",)),
    shop("mvideo", "М.Видео", "electronics", "https://www.mvideo.ru/", "Электроника, смартфоны и бытовая техника.",
         pct(200, cap_kopecks=300000), ("M.Video", "МВидео", "Эм Видео")),
    shop("citilink", "Ситилинк", "electronics", "https://www.citilink.ru/", "Компьютеры, ноутбуки и техника.",
         pct(250), ("Citilink",)),
    shop("dns", "DNS", "electronics", "https://www.dns-shop.ru/", "Цифровая и бытовая техника.", pct(150),
         ("ДНС", "DNS Shop")),
    shop("technopark", "Технопарк", "electronics", "https://www.technopark.ru/", "Техника для дома и гаджеты.",
         pct(300), ("Technopark",)),
    shop("holodilnik", "Холодильник.ру", "electronics", "https://www.holodilnik.ru/", "Крупная бытовая техника.",
         pct(250), ("Holodilnik.ru",)),
    shop("sportmaster", "Спортмастер", "fashion", "https://www.sportmaster.ru/",
         "Спортивная одежда, обувь и инвентарь.",
         pct(500, exclusive_loyalty=True), ("Sportmaster",)),
    shop("lamoda", "Lamoda", "fashion", "https://www.lamoda.ru/", "Одежда, обувь и аксессуары.", pct(600),
         ("Ламода",)),
    shop("wildberries", "Wildberries", "online-shops", "https://www.wildberries.ru/", "Маркетплейс одежды и не только.",
         pct(300), ("Вайлдберриз", "Валдберис")),
    shop("gloria-jeans", "Gloria Jeans", "fashion", "https://www.gloria-jeans.ru/", "Одежда для всей семьи.",
         pct(700), ("Глория Джинс",)),
    shop("befree", "Befree", "fashion", "https://befree.ru/", "Молодёжная одежда.", pct(800), ("Бифри",)),
    shop("rendez-vous", "Rendez-Vous", "fashion", "https://www.rendez-vous.ru/", "Обувь и аксессуары.", pct(600),
         ("Рандеву",)),
    shop("kari", "Kari", "fashion", "https://kari.com/", "Обувь и аксессуары по доступным ценам.", pct(500),
         ("Кари",)),
    shop("letual", "Л'Этуаль", "beauty", "https://www.letu.ru/", "Парфюмерия и косметика.", pct(500),
         ("Летуаль", "Letoile", "Letu")),
    shop("goldapple", "Золотое яблоко", "beauty", "https://goldapple.ru/", "Косметика и парфюмерия.", pct(400),
         ("Goldapple", "Gold Apple")),
    shop("rivegauche", "Рив Гош", "beauty", "https://rivegauche.ru/", "Парфюмерия и косметика.", pct(600),
         ("Rive Gauche",)),
    shop("apteka-ru", "Аптека.ру", "beauty", "https://apteka.ru/", "Лекарства и товары для здоровья.",
         pct(200, min_purchase_kopecks=50000), ("Apteka.ru",)),
    shop("detmir", "Детский мир", "kids", "https://www.detmir.ru/", "Игрушки, одежда и товары для детей.",
         pct(300), ("Detmir", "Детмир")),
    shop("korablik", "Кораблик", "kids", "https://www.korablik.ru/", "Товары для малышей.", pct(400), ("Korablik",)),
    shop("chitai-gorod", "Читай-город", "books", "https://www.chitai-gorod.ru/", "Книжный магазин.", pct(500),
         ("Chitai-gorod", "Читай город")),
    shop("book24", "Book24", "books", "https://book24.ru/", "Книги и подарки.", pct(700), ("Бук24",)),
    shop("litres", "Литрес", "books", "https://www.litres.ru/", "Электронные и аудиокниги.", pct(1000),
         ("LitRes",)),
    shop("leroymerlin", "Леруа Мерлен", "home", "https://leroymerlin.ru/", "Всё для ремонта, дома и сада.",
         pct(200, cap_kopecks=200000), ("Leroy Merlin", "Лемана")),
    shop("hoff", "Hoff", "home", "https://hoff.ru/", "Мебель и товары для дома.", pct(400), ("Хофф",)),
    shop("askona", "Аскона", "home", "https://www.askona.ru/", "Матрасы и товары для сна.", pct(800), ("Askona",)),
    shop("vkusvill", "ВкусВилл", "food", "https://vkusvill.ru/", "Продукты для здорового питания.", pct(300),
         ("VkusVill", "Вкус Вилл")),
    shop("utkonos", "Утконос", "food", "https://www.utkonos.ru/", "Доставка продуктов.", pct(200),
         ("Utkonos",)),
    shop("samokat", "Самокат", "food", "https://samokat.ru/", "Доставка продуктов за 15 минут.", fixed(10000),
         ("Samokat",)),
    shop("aviasales", "Aviasales", "travel", "https://www.aviasales.ru/", "Поиск дешёвых авиабилетов.",
         pct(150), ("Авиасейлс",)),
    shop("onetwotrip", "OneTwoTrip", "travel", "https://www.onetwotrip.com/", "Авиабилеты, отели и ж/д билеты.",
         pct(200), ("ВанТуТрип",)),
    shop("sutochno", "Суточно.ру", "travel", "https://sutochno.ru/", "Квартиры и дома посуточно.", pct(500),
         ("Sutochno.ru",)),
    shop("afisha", "Афиша", "leisure", "https://www.afisha.ru/", "Билеты в кино, театры и на концерты.", pct(400),
         ("Afisha",)),
    shop("skillbox", "Skillbox", "education", "https://skillbox.ru/", "Онлайн-курсы профессий.", pct(1500),
         ("Скиллбокс",)),
    shop("netology", "Нетология", "education", "https://netology.ru/", "Онлайн-обучение профессиям.", pct(1200),
         ("Netology",)),
    shop("geekbrains", "GeekBrains", "education", "https://gb.ru/", "Курсы программирования.", pct(1000),
         ("ГикБрейнс",)),
    # The operator's own services: a billing activation credits a fixed amount.
    shop("operator-music", "Музыка", "operator-services", "https://music.example-operator.ru/",
         "Подписка на музыкальный сервис.", fixed(10000), ("Music",), service_code="music"),
    shop("operator-tv", "ТВ", "operator-services", "https://tv.example-operator.ru/",
         "Подписка на онлайн-ТВ и фильмы.", fixed(15000), ("TV", "Онлайн ТВ"), service_code="tv"),
    shop("operator-ringback", "Гудок", "operator-services", "https://gudok.example-operator.ru/",
         "Мелодия вместо длинных гудков.", fixed(5000), ("Ringback",), service_code="ringback"),
]

# --- generated shops: three Russian name shapes and a Latin one, per category -------------------

# "ТехноМир": a compound of two parts.
COMPOUNDS = {
    "online-shops": (["Мега", "Всё", "Супер", "Быстро", "Выгодно", "Торг", "Опт", "Поку"],
                     ["Маркет", "Базар", "Лавка", "Склад", "Сити", "Дом", "Мол", "Пункт"]),
    "electronics": (["Техно", "Цифро", "Электро", "Гаджет", "Смарт", "Вольт", "Инфо", "Мобил"],
                    ["Мир", "Маркет", "Точка", "Сити", "Порт", "Град", "Лэнд", "Склад"]),
    "fashion": (["Стиль", "Мода", "Обувь", "Шуба", "Джинс", "Трико", "Кеды", "Шарф"],
                ["Маркет", "Лавка", "Сити", "Дом", "Мир", "Салон", "Склад", "Бутик"]),
    "home": (["Уют", "Дача", "Сад", "Мебель", "Декор", "Строй", "Кухни", "Свет"],
             ["Маркет", "Мир", "Дом", "Центр", "Двор", "Град", "Сити", "Лавка"]),
    "beauty": (["Аптека", "Здраво", "Био", "Эко", "Вита", "Космо", "Аромо", "Фито"],
               ["Маркет", "Лавка", "Сити", "Мир", "Центр", "Лайн", "Дом", "Плюс"]),
    "kids": (["Малыш", "Детки", "Игрушки", "Карапуз", "Крошка", "Мишка", "Пупс", "Киндер"],
             ["Маркет", "Мир", "Лэнд", "Дом", "Сити", "Град", "Остров", "Лавка"]),
    "books": (["Книго", "Чита", "Хобби", "Арт", "Бумага", "Пазл", "Рукоделие", "Холст"],
              ["Мир", "Лавка", "Дом", "Маркет", "Центр", "Клуб", "Полка", "Град"]),
    "food": (["Продукто", "Вкусно", "Фермер", "Еда", "Хлебо", "Гастро", "Сыро", "Мясо"],
             ["Маркет", "Лавка", "Двор", "Дом", "Экспресс", "Склад", "Сити", "Мир"]),
    "travel": (["Тур", "Авиа", "Отель", "Круиз", "Визит", "Турист", "Виза", "Путь"],
               ["Сервис", "Центр", "Экспресс", "Маркет", "Клуб", "Мир", "Гид", "Порт"]),
    "restaurant-booking": (["Ресто", "Кафе", "Бистро", "Гурман", "Стол", "Банкет", "Гриль", "Ужин"],
                           ["Клуб", "Гид", "Сервис", "Центр", "Маркет", "Сити", "Онлайн", "Бронь"]),
    "leisure": (["Кино", "Квест", "Парк", "Театр", "Концерт", "Шоу", "Игро", "Боулинг"],
                ["Клуб", "Центр", "Мир", "Сити", "Маркет", "Порт", "Лэнд", "Касса"]),
    "education": (["Знание", "Учи", "Умно", "Курсы", "Лингва", "Школа", "Репетитор", "Навык"],
                  ["Онлайн", "Центр", "Клуб", "Плюс", "Про", "Лаб", "Сити", "Мир"]),
}
# "Мир гаджетов": a head noun and a complement in the genitive (agrees with any head).
HEADS = ["Мир", "Планета", "Город", "Дом", "Страна", "Остров", "Галерея", "Территория", "Вселенная", "Империя"]
GENITIVES = {
    "online-shops": ["покупок", "товаров", "скидок", "находок", "подарков", "распродаж"],
    "electronics": ["техники", "гаджетов", "электроники", "смартфонов", "ноутбуков", "бытовой техники"],
    "fashion": ["обуви", "одежды", "джинсов", "платьев", "сумок", "шуб"],
    "home": ["мебели", "уюта", "ковров", "посуды", "инструментов", "света"],
    "beauty": ["красоты", "косметики", "ароматов", "здоровья", "парфюмерии", "витаминов"],
    "kids": ["игрушек", "детства", "малышей", "конструкторов", "колясок", "чудес"],
    "books": ["книг", "рукоделия", "хобби", "открыток", "красок", "настольных игр"],
    "food": ["вкуса", "продуктов", "сыров", "чая", "кофе", "сладостей"],
    "travel": ["путешествий", "туров", "отелей", "билетов", "круизов", "приключений"],
    "restaurant-booking": ["ресторанов", "гурманов", "вкуса", "кафе", "банкетов", "ужинов"],
    "leisure": ["развлечений", "квестов", "праздников", "игр", "аттракционов", "впечатлений"],
    "education": ["знаний", "языков", "курсов", "профессий", "навыков", "открытий"],
}
# "Уютный дом": an adjective agreeing with its noun (m, f, n, pl).
ADJECTIVES = {
    "online-shops": ["Выгодный", "Быстрый", "Большой", "Народный", "Честный", "Добрый"],
    "electronics": ["Цифровой", "Умный", "Электронный", "Технический", "Мобильный", "Быстрый"],
    "fashion": ["Модный", "Стильный", "Городской", "Северный", "Белый", "Красный"],
    "home": ["Уютный", "Домашний", "Садовый", "Зелёный", "Тёплый", "Деревянный"],
    "beauty": ["Чистый", "Здоровый", "Живой", "Нежный", "Природный", "Лесной"],
    "kids": ["Детский", "Весёлый", "Маленький", "Яркий", "Добрый", "Сказочный"],
    "books": ["Книжный", "Читающий", "Творческий", "Старый", "Новый", "Бумажный"],
    "food": ["Вкусный", "Свежий", "Фермерский", "Сытый", "Домашний", "Деревенский"],
    "travel": ["Дальний", "Морской", "Южный", "Солнечный", "Горный", "Лёгкий"],
    "restaurant-booking": ["Вкусный", "Ресторанный", "Праздничный", "Гастрономический", "Вечерний", "Столичный"],
    "leisure": ["Весёлый", "Праздничный", "Яркий", "Большой", "Ночной", "Звёздный"],
    "education": ["Умный", "Быстрый", "Открытый", "Новый", "Первый", "Творческий"],
}
NOUNS = {
    "online-shops": [("рынок", "m"), ("магазин", "m"), ("склад", "m"), ("лавка", "f"), ("корзина", "f"),
                     ("покупки", "pl")],
    "electronics": [("дом", "m"), ("мир", "m"), ("магазин", "m"), ("техника", "f"), ("точка", "f"),
                    ("гаджеты", "pl")],
    "fashion": [("гардероб", "m"), ("стиль", "m"), ("лавка", "f"), ("мода", "f"), ("ателье", "n"),
                ("башмачки", "pl")],
    "home": [("дом", "m"), ("сад", "m"), ("двор", "m"), ("усадьба", "f"), ("гнездо", "n"), ("интерьеры", "pl")],
    "beauty": [("сад", "m"), ("мир", "m"), ("аптека", "f"), ("косметика", "f"), ("лицо", "n"),
               ("травы", "pl")],
    "kids": [("мир", "m"), ("сад", "m"), ("страна", "f"), ("планета", "f"), ("детство", "n"), ("игрушки", "pl")],
    "books": [("дом", "m"), ("переплёт", "m"), ("лавка", "f"), ("полка", "f"), ("слово", "n"),
              ("страницы", "pl")],
    "food": [("двор", "m"), ("погреб", "m"), ("лавка", "f"), ("корзинка", "f"), ("подворье", "n"),
             ("продукты", "pl")],
    "travel": [("берег", "m"), ("путь", "m"), ("дорога", "f"), ("гавань", "f"), ("направление", "n"),
               ("странствия", "pl")],
    "restaurant-booking": [("стол", "m"), ("вечер", "m"), ("бронь", "f"), ("трапеза", "f"), ("меню", "n"),
                           ("столики", "pl")],
    "leisure": [("вечер", "m"), ("досуг", "m"), ("афиша", "f"), ("касса", "f"), ("время", "n"),
                ("выходные", "pl")],
    "education": [("класс", "m"), ("университет", "m"), ("школа", "f"), ("академия", "f"), ("знание", "n"),
                  ("курсы", "pl")],
}
# Latin names, as many Russian shops have (found by a Cyrillic query through transliteration).
LATIN = {
    "online-shops": (["Mega", "Best", "Smart", "Happy", "Grand", "Prime"], ["Market", "Store", "Mall", "Outlet"]),
    "electronics": (["Techno", "Digital", "Volt", "Pixel", "Nano", "Hyper"], ["Point", "Zone", "Lab", "Hub"]),
    "fashion": (["Urban", "Street", "Velvet", "Cotton", "Denim", "Nord"], ["Wear", "Look", "Style", "Shoes"]),
    "home": (["Cozy", "Green", "Comfort", "Wood", "Stone", "Sunny"], ["House", "Decor", "Home", "Living"]),
    "beauty": (["Pure", "Bella", "Glow", "Fresh", "Silk", "Natura"], ["Beauty", "Care", "Spa", "Skin"]),
    "kids": (["Little", "Tiny", "Bright", "Merry", "Teddy", "Magic"], ["Kids", "Toys", "Baby", "Land"]),
    "books": (["Read", "Page", "Ink", "Paper", "Story", "Craft"], ["Books", "Club", "Studio", "Shelf"]),
    "food": (["Fresh", "Farm", "Tasty", "Gourmet", "Local", "Daily"], ["Food", "Box", "Kitchen", "Bakery"]),
    "travel": (["Sky", "Sea", "Globe", "Sun", "North", "Star"], ["Travel", "Tours", "Trips", "Air"]),
    "restaurant-booking": (["Table", "Chef", "Dine", "Bistro", "Grill", "Feast"], ["Booking", "Guide", "Club", "Spot"]),
    "leisure": (["Fun", "Event", "Show", "Play", "Wild", "Epic"], ["Tickets", "Park", "Games", "Quest"]),
    "education": (["Smart", "Bright", "Skill", "Code", "Mind", "Study"], ["School", "Academy", "Courses", "Class"]),
}
DESCRIPTIONS = {
    "online-shops": ["Товары для дома, дачи и отдыха.", "Всё для жизни с доставкой на дом.",
                     "Тысячи товаров по выгодным ценам."],
    "electronics": ["Смартфоны, ноутбуки и аксессуары.", "Бытовая техника для дома и кухни.",
                    "Гаджеты и электроника с доставкой."],
    "fashion": ["Одежда и обувь для всей семьи.", "Модная одежда и аксессуары.", "Обувь на каждый сезон."],
    "home": ["Мебель и товары для дома.", "Всё для сада и огорода.", "Товары для ремонта и интерьера."],
    "beauty": ["Косметика и парфюмерия.", "Аптека с доставкой.", "Товары для здоровья и ухода."],
    "kids": ["Игрушки и товары для детей.", "Всё для малышей и мам.", "Детская одежда и обувь."],
    "books": ["Книги и канцелярия.", "Товары для творчества и рукоделия.", "Настольные игры и хобби."],
    "food": ["Доставка продуктов на дом.", "Фермерские продукты.", "Готовая еда с доставкой."],
    "travel": ["Туры и путёвки.", "Отели и апартаменты.", "Билеты на самолёты и поезда."],
    "restaurant-booking": ["Бронирование столиков в ресторанах.", "Рестораны и кафе вашего города.",
                           "Банкеты и праздничные ужины."],
    "leisure": ["Билеты на концерты и спектакли.", "Квесты и развлечения.", "Парки, аттракционы и шоу."],
    "education": ["Онлайн-курсы и обучение.", "Курсы иностранных языков.", "Репетиторы и подготовка к экзаменам."],
}

# Slugs and site addresses: a simple transliteration of the name.
_SLUG_LETTERS = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                         ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p",
                          "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"],
                         strict=True))


def slugify(name: str) -> str:
    latin = "".join(_SLUG_LETTERS.get(ch, ch) for ch in name.lower())
    return re.sub(r"[^a-z0-9]+", "-", latin).strip("-")


def agree(adjective: str, gender: str) -> str:
    """The adjective (masculine form, ending -ый/-ой/-ий) in the noun's gender or the plural."""
    stem, ending = adjective[:-2], adjective[-2:]
    soft = ending == "ий" and stem[-1] not in "кгхжшчщ"
    hushing = stem[-1] in "жшчщ"
    return stem + {"m": ending, "f": "яя" if soft else "ая",
                   "n": "ее" if soft or (hushing and ending == "ий") else "ое",
                   "pl": "ие" if ending == "ий" or stem[-1] in "кгхжшчщ" else "ые"}[gender]


def generated_name(rng: random.Random, category: str) -> str:
    shape = rng.random()
    if shape < 0.3:
        first, second = COMPOUNDS[category]
        return rng.choice(first) + rng.choice(second)
    if shape < 0.55:
        return f"{rng.choice(HEADS)} {rng.choice(GENITIVES[category])}"
    if shape < 0.85:
        noun, gender = rng.choice(NOUNS[category])
        return f"{agree(rng.choice(ADJECTIVES[category]), gender)} {noun}"
    first, second = LATIN[category]
    return f"{rng.choice(first)} {rng.choice(second)}"


def generated_rules(rng: random.Random) -> dict[str, object]:
    shape = rng.random()
    rules: dict[str, object]
    if shape < 0.12:
        rules = {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": rng.choice([3000, 5000, 10000, 20000, 30000])}]}
    elif shape < 0.27:
        low = rng.choice([100, 150, 200, 300, 400])
        rules = {"tiers": [{"min_amount_kopecks": 0, "rate_bps": low},
                           {"min_amount_kopecks": rng.choice([500000, 1000000, 2000000]),
                            "rate_bps": low + rng.choice([100, 200, 300])}]}
    else:
        rules = {"tiers": [{"min_amount_kopecks": 0, "rate_bps": rng.choice(
            [100, 200, 250, 300, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000])}]}
    if rng.random() < 0.25:
        rules["cap_kopecks"] = rng.choice([50000, 100000, 200000, 300000, 500000])
    if rng.random() < 0.2:
        rules["min_purchase_kopecks"] = rng.choice([5000, 10000, 30000, 50000, 100000])
    rules["app_orders_allowed"] = rng.random() < 0.3
    rules["exclusive_loyalty"] = rng.random() < 0.1
    rules["legal_entities_excluded"] = True
    return rules


def main() -> None:
    rng = random.Random(780)
    partners = [dict(p) for p in NAMED]
    slugs = {p["slug"] for p in partners}
    names = {str(p["name"]).casefold() for p in partners}
    cats = list(COMPOUNDS)
    while len(partners) < TARGET_PARTNERS:
        category = cats[len(partners) % len(cats)]
        name = generated_name(rng, category)
        slug = slugify(name)
        if slug in slugs or name.casefold() in names:
            continue  # drawn before: draw again (the shapes give far more names than needed)
        slugs.add(slug)
        names.add(name.casefold())
        partners.append({
            "slug": slug, "name": name, "category": category, "site_url": f"https://{slug}.example.ru/",
            "description": rng.choice(DESCRIPTIONS[category]), "rules": generated_rules(rng),
        })
    data = {"categories": [{"slug": s, "name": n} for s, n in CATEGORIES], "partners": partners}
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(partners)} partners in {len(CATEGORIES)} categories to {OUT}")


if __name__ == "__main__":
    main()
